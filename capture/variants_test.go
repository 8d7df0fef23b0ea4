package capture

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// variant is one capture file of the lab's traffic.
type variant struct {
	name string
	path string
	// subset, when set, keeps only the flows whose server port passes it (a
	// variant that carries only IPv4 or only IPv6).
	subset func(f Flow) bool
	// sameCapture: the frames are the tcpdump -i veth ones, so timing must
	// agree too, not only the counts.
	sameCapture bool
}

func isV6(f Flow) bool { return strings.HasPrefix(f.Client, "[") }

func notVLAN(f Flow) bool { return !strings.HasSuffix(f.Server, fmt.Sprintf(":%d", portVLAN)) }

// makeVariants writes every encapsulation kadiag reads, from the lab's
// captures, into dir.
func makeVariants(t testing.TB, lc *labCaptures, dir string) []variant {
	t.Helper()
	eth := readFrames(t, lc.eth)
	anyFrames := readFrames(t, lc.any)
	p := func(name string) string { return filepath.Join(dir, name) }
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(lc.eth, p("eth.pcap"))
	copyFile(lc.nano, p("eth-nano.pcap"))
	copyFile(lc.any, p("any-sll2.pcap"))
	copyFile(lc.live, p("kadiag-live.pcapng"))

	raw := func(b []byte) []byte { return ipOf(b) }
	only := func(v int) func([]byte) []byte {
		return func(b []byte) []byte {
			ip := ipOf(b)
			if version(ip) != v {
				return nil
			}
			return ip
		}
	}
	writePcap(t, p("raw.pcap"), layers.LinkTypeRaw, false, mapFrames(eth, raw))
	writePcap(t, p("ipv4.pcap"), linkTypeIPv4, true, mapFrames(eth, only(4)))
	writePcap(t, p("ipv6.pcap"), linkTypeIPv6, false, mapFrames(eth, only(6)))
	writePcap(t, p("null.pcap"), layers.LinkTypeNull, false, mapFrames(eth, nullHeader(false)))
	writePcap(t, p("loop.pcap"), layers.LinkTypeLoop, false, mapFrames(eth, nullHeader(true)))
	writePcap(t, p("vlan.pcap"), layers.LinkTypeEthernet, false, mapFrames(eth, tag(42)))
	writePcap(t, p("qinq.pcap"), layers.LinkTypeEthernet, true, mapFrames(eth, tag(100, 42)))
	cut := func(n int) func([]byte) []byte {
		return func(b []byte) []byte { return b[:min(n, len(b))] }
	}
	// Cut frames keep their original length: mapFrames would shrink it.
	snap := func(name string, n int) {
		var fs []frame
		for _, f := range eth {
			d := cut(n)(f.data)
			ci := f.ci
			ci.CaptureLength = len(d)
			fs = append(fs, frame{ci, d, f.lt})
		}
		writePcap(t, p(name), layers.LinkTypeEthernet, false, fs)
	}
	snap("snap96.pcap", 96)
	snap("snap60.pcap", 60)

	// One pcapng with three interfaces of three link types, each carrying
	// other flows: IPv4 on Ethernet (tagged), the retransmission flow as raw
	// IP, IPv6 from the tcpdump -i any capture as SLL2.
	var multi []frame
	for _, f := range eth {
		ip := ipOf(f.data)
		switch {
		case version(ip) != 4:
		case binary.BigEndian.Uint16(ip[20:]) == portRetransmit || binary.BigEndian.Uint16(ip[22:]) == portRetransmit:
			ci := f.ci
			ci.CaptureLength, ci.Length = len(ip), len(ip)
			multi = append(multi, frame{ci, ip, layers.LinkTypeRaw})
		default:
			d := tag(7)(f.data)
			ci := f.ci
			ci.CaptureLength, ci.Length = len(d), f.ci.Length+4
			multi = append(multi, frame{ci, d, layers.LinkTypeEthernet})
		}
	}
	for _, f := range anyFrames {
		if len(f.data) > 20 && f.data[20]>>4 == 6 {
			multi = append(multi, f)
		}
	}
	writeNg(t, p("multi.pcapng"), multi)
	gzipFile(t, p("eth.pcap"), p("eth.pcap.gz"))
	gzipFile(t, p("multi.pcapng"), p("multi.pcapng.gz"))

	// -i any sees a VLAN flow twice (on the VLAN device and, tagged, on
	// its parent), like every capture on two interfaces of one path.
	return variantsIn(dir, notVLAN)
}

// variantsIn lists the encapsulations makeVariants writes, as they are
// named in dir; anySLL2 picks the flows the -i any capture is compared on.
func variantsIn(dir string, anySLL2 func(Flow) bool) []variant {
	p := func(name string) string { return filepath.Join(dir, name) }
	v4 := func(f Flow) bool { return !isV6(f) }
	return []variant{
		{name: "eth", path: p("eth.pcap"), sameCapture: true},
		{name: "eth-nano", path: p("eth-nano.pcap")},
		{name: "any-sll2", path: p("any-sll2.pcap"), subset: anySLL2},
		{name: "kadiag-live", path: p("kadiag-live.pcapng")},
		{name: "raw", path: p("raw.pcap"), sameCapture: true},
		{name: "ipv4", path: p("ipv4.pcap"), subset: v4, sameCapture: true},
		{name: "ipv6", path: p("ipv6.pcap"), subset: isV6, sameCapture: true},
		{name: "null", path: p("null.pcap"), sameCapture: true},
		{name: "loop", path: p("loop.pcap"), sameCapture: true},
		{name: "vlan", path: p("vlan.pcap"), sameCapture: true},
		{name: "qinq", path: p("qinq.pcap"), sameCapture: true},
		{name: "snap96", path: p("snap96.pcap"), sameCapture: true},
		{name: "multi", path: p("multi.pcapng")},
		{name: "eth-gz", path: p("eth.pcap.gz"), sameCapture: true},
		{name: "multi-gz", path: p("multi.pcapng.gz")},
	}
}

// flowsByServer indexes flows by server port (each lab scenario has its own).
func flowsByServer(t testing.TB, res *Result) map[string]Flow {
	t.Helper()
	out := map[string]Flow{}
	for _, f := range res.Flows {
		i := strings.LastIndex(f.Server, ":")
		port := f.Server[i+1:]
		if _, dup := out[port]; dup {
			t.Errorf("two flows to port %s", port)
		}
		out[port] = f
	}
	return out
}

// sameFlows checks that two analyses of the same traffic agree flow by flow.
func sameFlows(t *testing.T, what string, want, got *Result, keep func(Flow) bool, timing bool) {
	t.Helper()
	w, g := flowsByServer(t, want), flowsByServer(t, got)
	var ports []string
	for p, f := range w {
		if keep == nil || keep(f) {
			ports = append(ports, p)
		}
	}
	sort.Strings(ports)
	for p, f := range g {
		if keep != nil && !keep(f) {
			delete(g, p)
		}
	}
	if len(g) != len(ports) {
		t.Errorf("%s: %d flows, want %d", what, len(g), len(ports))
	}
	for _, port := range ports {
		a, b := w[port], g[port]
		type counts struct {
			Client, Server                                  string
			Packets, Bytes                                  uint64
			Probes, Acks, WS, Unanswered, ZWP, Retrans, RST int
			ClientProbes, ServerProbes                      int
			Verdict                                         string
		}
		ca := counts{a.Client, a.Server, a.Packets, a.Bytes, a.Probes, a.ProbeAcks, a.WiresharkKeepAlives, a.UnansweredProbes, a.ZeroWindowProbes, a.Retransmissions, a.RSTs, a.ClientProbes, a.ServerProbes, a.Verdict}
		cb := counts{b.Client, b.Server, b.Packets, b.Bytes, b.Probes, b.ProbeAcks, b.WiresharkKeepAlives, b.UnansweredProbes, b.ZeroWindowProbes, b.Retransmissions, b.RSTs, b.ClientProbes, b.ServerProbes, b.Verdict}
		if ca != cb {
			t.Errorf("%s: port %s:\n got %+v\nwant %+v", what, port, cb, ca)
			continue
		}
		if timing && (math.Abs(a.MaxGapS-b.MaxGapS) > 0.0015 || a.ProbeIntervalS.Count != b.ProbeIntervalS.Count ||
			math.Abs(a.ProbeIntervalS.Median-b.ProbeIntervalS.Median) > 0.0015) {
			t.Errorf("%s: port %s: timing differs: gap %v/%v, intervals %+v/%+v", what, port, b.MaxGapS, a.MaxGapS, b.ProbeIntervalS, a.ProbeIntervalS)
		}
	}
}
