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
	// The committed fixtures come from a kernel without 8021q: no VLAN
	// flow, so their -i any capture holds every flow once. Compare all.
	return variantsIn(fixtureDir, nil)
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
