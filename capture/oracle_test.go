package capture

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// tsharkCounts is what tshark says per flow: the segments it flags
// tcp.analysis.keep_alive, tcp.analysis.keep_alive_ack and
// tcp.analysis.zero_window_probe, and, split by sender, the keep-alives sent
// while the receiver's last advertised window (tcp.window_size_value) was
// zero: Linux probes a zero window in keep-alive form (tcp_xmit_probe_skb).
type tsharkCounts struct {
	keepAlive, keepAliveAck, zeroWindowProbe int
	// probes maps a sender to its keep-alives into an open window, zeroWin
	// to its keep-alives into a zero window.
	probes, zeroWin map[string]int
}

// flowName is a direction-free name of a flow: its two endpoints, sorted.
func flowName(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + " " + b
}

// tsharkFlows runs tshark on file and counts its flags per flow (named by
// its endpoints; connections reusing them add up).
func tsharkFlows(t *testing.T, file string) map[string]*tsharkCounts {
	t.Helper()
	out := map[string]*tsharkCounts{}
	// tshark prints 1 for a flag field that is present.
	cmd := exec.Command("tshark", "-n", "-r", file, "-Y", "tcp",
		"-T", "fields", "-E", "separator=|", "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "tcp.analysis.keep_alive", "-e", "tcp.analysis.keep_alive_ack",
		"-e", "tcp.analysis.zero_window_probe", "-e", "tcp.window_size_value")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v: %s", file, err, stderr.String())
	}
	window := map[string]string{} // sender -> its last advertised window
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 11 {
			t.Fatalf("tshark line %q", line)
		}
		src, dst := f[1], f[4]
		if src == "" {
			src, dst = f[2], f[5]
		}
		// Addresses of the innermost IP header (tunnels list several).
		from, to := ap(t, last(src), f[3]), ap(t, last(dst), f[6])
		name := flowName(from, to)
		c := out[name]
		if c == nil {
			c = &tsharkCounts{probes: map[string]int{}, zeroWin: map[string]int{}}
			out[name] = c
		}
		if f[7] != "" {
			c.keepAlive++
			if window[f[0]+" "+to] == "0" {
				c.zeroWin[from]++
			} else {
				c.probes[from]++
			}
		}
		if f[8] != "" {
			c.keepAliveAck++
		}
		if f[9] != "" {
			c.zeroWindowProbe++
		}
		window[f[0]+" "+from] = f[10]
	}
	return out
}

func last(s string) string {
	parts := strings.Split(s, ",")
	return parts[len(parts)-1]
}

func ap(t *testing.T, addr, port string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		t.Fatalf("tshark address %q: %v", addr, err)
	}
	var p uint16
	fmt.Sscan(port, &p)
	return netip.AddrPortFrom(a, p).String()
}

// checkOracle compares kadiag's per-flow counts with tshark's on one file:
// the Wireshark mirror counters exactly, and, where the handshake was
// captured (Wireshark's rules see every probe then), the probes per side,
// their ACKs and the zero window probes exactly too. Mid-connection kadiag
// sees more probes than Wireshark's rule, never fewer.
func checkOracle(t *testing.T, file string, res *Result) {
	t.Helper()
	want := tsharkFlows(t, file)
	type counts struct{ keepAlive, keepAliveAck int }
	got := map[string]counts{}
	synFlows := map[string][]Flow{}
	for _, f := range res.Flows {
		n := flowName(f.Client, f.Server)
		c := got[n]
		c.keepAlive += f.WiresharkKeepAlives
		c.keepAliveAck += f.WiresharkKeepAliveAcks
		got[n] = c
		synFlows[n] = append(synFlows[n], f)
	}
	names := map[string]bool{}
	for n, w := range want {
		if w.keepAlive+w.keepAliveAck > 0 {
			names[n] = true
		}
	}
	for n, c := range got {
		if c != (counts{}) {
			names[n] = true
		}
	}
	sorted := slices.Sorted(maps.Keys(names))
	sawProbe := false
	for _, n := range sorted {
		w := want[n]
		if w == nil {
			w = &tsharkCounts{}
		}
		if g := got[n]; g != (counts{w.keepAlive, w.keepAliveAck}) {
			t.Errorf("%s: flow %s: kadiag keep_alive=%d keep_alive_ack=%d, tshark %d/%d",
				file, n, g.keepAlive, g.keepAliveAck, w.keepAlive, w.keepAliveAck)
		}
		var client, server, acks, zwp int
		allSyn := true
		for _, f := range synFlows[n] {
			allSyn = allSyn && f.Orientation == "syn"
			client += f.ClientProbes
			server += f.ServerProbes
			acks += f.ProbeAcks
			zwp += f.ZeroWindowProbes
		}
		fl := synFlows[n]
		if len(fl) == 0 {
			continue
		}
		wc, ws := w.probes[fl[0].Client], w.probes[fl[0].Server]
		wz := w.zeroWindowProbe + w.zeroWin[fl[0].Client] + w.zeroWin[fl[0].Server]
		sawProbe = sawProbe || wc+ws > 0
		if allSyn && (client != wc || server != ws || acks != w.keepAliveAck || zwp != wz) {
			t.Errorf("%s: flow %s with its handshake: probes client %d server %d, acks %d, zero window probes %d; tshark %d/%d, %d, %d",
				file, n, client, server, acks, zwp, wc, ws, w.keepAliveAck, wz)
		}
		if !allSyn && (client < wc || server < ws) {
			t.Errorf("%s: flow %s mid-connection: probes client %d server %d, fewer than tshark's %d/%d", file, n, client, server, wc, ws)
		}
	}
	if !sawProbe {
		t.Errorf("%s: tshark found no keep-alive probe at all: the capture proves nothing", file)
	}
}
