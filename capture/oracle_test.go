package capture

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// tsharkCounts is what tshark says per flow: the number of segments it
// flags tcp.analysis.keep_alive and tcp.analysis.keep_alive_ack.
type tsharkCounts struct {
	keepAlive, keepAliveAck int
}

// flowName is a direction-free name of a flow: its two endpoints, sorted.
func flowName(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + " " + b
}

// tsharkFlows runs tshark on file and counts its keep-alive flags per flow
// (per tcp.stream, named by its endpoints).
func tsharkFlows(t *testing.T, file string) map[string]tsharkCounts {
	t.Helper()
	out := map[string]tsharkCounts{}
	// One pass: tshark prints 1 for a flag field that is present.
	cmd := exec.Command("tshark", "-n", "-r", file, "-Y", "tcp.analysis.keep_alive || tcp.analysis.keep_alive_ack",
		"-T", "fields", "-E", "separator=|", "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "tcp.analysis.keep_alive", "-e", "tcp.analysis.keep_alive_ack")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v: %s", file, err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 9 {
			t.Fatalf("tshark line %q", line)
		}
		src, dst := f[1], f[4]
		if src == "" {
			src, dst = f[2], f[5]
		}
		// Addresses of the innermost IP header (tunnels list several).
		src, dst = last(src), last(dst)
		name := flowName(ap(t, src, f[3]), ap(t, dst, f[6]))
		c := out[name]
		if f[7] != "" {
			c.keepAlive++
		}
		if f[8] != "" {
			c.keepAliveAck++
		}
		out[name] = c
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

// checkOracle compares kadiag's per-flow counts with tshark's on one file.
func checkOracle(t *testing.T, file string, res *Result) {
	t.Helper()
	want := tsharkFlows(t, file)
	got := map[string]tsharkCounts{}
	for _, f := range res.Flows {
		if f.Orientation == "syn" && (f.ProbeAcks != f.WiresharkKeepAliveAcks || f.Probes > f.WiresharkKeepAlives) {
			t.Errorf("%s: flow %s -> %s with its handshake: probes %d acks %d differ from Wireshark's rule %d/%d",
				file, f.Client, f.Server, f.Probes, f.ProbeAcks, f.WiresharkKeepAlives, f.WiresharkKeepAliveAcks)
		}
		n := flowName(f.Client, f.Server)
		c := got[n]
		c.keepAlive += f.WiresharkKeepAlives
		c.keepAliveAck += f.WiresharkKeepAliveAcks
		got[n] = c
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok && got[n] != (tsharkCounts{}) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if got[n] != want[n] {
			t.Errorf("%s: flow %s: kadiag keep_alive=%d keep_alive_ack=%d, tshark %d/%d",
				file, n, got[n].keepAlive, got[n].keepAliveAck, want[n].keepAlive, want[n].keepAliveAck)
		}
	}
	if len(want) == 0 {
		t.Errorf("%s: tshark found no keep-alives at all: the capture proves nothing", file)
	}
}
