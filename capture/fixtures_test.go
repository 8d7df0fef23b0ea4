package capture

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/kadiag/kadiag/internal/testenv"
)

const fixtureDir = "../testdata/capture"

// TestWriteFixtures regenerates testdata/capture from a fresh lab run; it
// runs only from testdata/capture/make-fixtures.sh.
func TestWriteFixtures(t *testing.T) {
	dir := os.Getenv("KADIAG_WRITE_FIXTURES")
	if dir == "" {
		t.Skip("set by testdata/capture/make-fixtures.sh")
	}
	lc := runLab(t)
	makeVariants(t, lc, dir)
	// Every TCP header cut by the snaplen: nothing can be analysed.
	var cut []frame
	for _, f := range readFrames(t, lc.eth) {
		ci := f.ci
		ci.CaptureLength = min(60, len(f.data))
		cut = append(cut, frame{ci, f.data[:ci.CaptureLength], f.lt})
	}
	writePcap(t, filepath.Join(dir, "snap60.pcap"), layers.LinkTypeEthernet, false, cut)
}

// fixtureVariants describes the committed fixtures the way makeVariants
// made them.
func fixtureVariants() []variant {
	v4 := func(f Flow) bool { return !isV6(f) }
	p := func(n string) string { return filepath.Join(fixtureDir, n) }
	return []variant{
		{name: "eth", path: p("eth.pcap"), sameCapture: true},
		{name: "eth-nano", path: p("eth-nano.pcap")},
		{name: "any-sll2", path: p("any-sll2.pcap")},
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

// TestFixtures: the committed captures, read without privileges, agree with
// tshark and with each other.
func TestFixtures(t *testing.T) {
	want, err := ReadFile(filepath.Join(fixtureDir, "eth.pcap"), Options{MaxIdle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Flows) < 7 {
		t.Fatalf("eth.pcap: %d flows, want the lab's 7", len(want.Flows))
	}
	for _, v := range fixtureVariants() {
		t.Run(v.name, func(t *testing.T) {
			got, err := ReadFile(v.path, Options{MaxIdle: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			sameFlows(t, v.name, want, got, v.subset, v.sameCapture)
			testenv.Need(t, "tshark") // after the agreement check: a skip keeps it
			checkOracle(t, v.path, got)
		})
	}
}
