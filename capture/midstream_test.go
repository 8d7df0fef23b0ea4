package capture

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestMidStream: a capture that starts after the handshake and the data
// (attaching to a long-idle connection, the usual case for kadiag capture
// --pid) still shows every probe and its answer, where Wireshark's rule
// sees none until data flows.
func TestMidStream(t *testing.T) {
	full, err := ReadFile(filepath.Join(fixtureDir, "eth.pcap"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	frames := readFrames(t, filepath.Join(fixtureDir, "eth.pcap"))
	// After every IPv4 handshake and exchange, before the first probe.
	start := frames[0].ci.Timestamp.Add(500 * time.Millisecond)
	var late []frame
	for _, f := range frames {
		if !f.ci.Timestamp.Before(start) {
			late = append(late, f)
		}
	}
	path := filepath.Join(t.TempDir(), "late.pcap")
	writePcap(t, path, layers.LinkTypeEthernet, false, late)
	mid, err := ReadFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, got := flowsByServer(t, full), flowsByServer(t, mid)
	for _, port := range []int{portKeepalive, portServerKA, portLost} {
		w, g := want[fmt.Sprint(port)], got[fmt.Sprint(port)]
		if g.Orientation != "port" {
			t.Errorf("port %d: orientation %q, want port (no handshake)", port, g.Orientation)
		}
		if g.Probes != w.Probes || g.ProbeAcks != w.ProbeAcks || g.ClientProbes != w.ClientProbes || g.UnansweredProbes != w.UnansweredProbes {
			t.Errorf("port %d mid-stream: probes %d acks %d client %d unanswered %d; full capture %d/%d/%d/%d",
				port, g.Probes, g.ProbeAcks, g.ClientProbes, g.UnansweredProbes, w.Probes, w.ProbeAcks, w.ClientProbes, w.UnansweredProbes)
		}
		if g.Client != w.Client {
			t.Errorf("port %d: client %s, want %s", port, g.Client, w.Client)
		}
	}
	if f := got[fmt.Sprint(portZeroWindow)]; f.Probes != 0 {
		t.Errorf("zero window flow mid-stream: %d probes", f.Probes)
	}
	if f := got[fmt.Sprint(portRetransmit)]; f.Probes != 0 {
		t.Errorf("retransmission flow mid-stream: %d probes", f.Probes)
	}
}
