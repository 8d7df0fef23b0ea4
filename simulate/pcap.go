package simulate

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/kadiag/kadiag/internal/atomicfile"
)

// writePcap writes every lab's client link as one pcapng file, an
// interface per lab named after its scenario, packets in time order. The
// file appears complete or not at all: temp file, fsync, rename.
func writePcap(path string, names []string, labs [][]capturedPacket) error {
	err := atomicfile.WriteFile(path, 0o644, func(f io.Writer) error {
		return writeLabs(f, names, labs)
	})
	if err != nil {
		return fmt.Errorf("%w %s: %w (the lab's report is complete; nothing was saved under that name)", ErrPcap, path, atomicfile.Cause(err, path))
	}
	return nil
}

// ErrPcap is returned (wrapped) when the --pcap file cannot be written:
// before the run when its directory is not writable, after it when the
// disk is full (then with the Result).
var ErrPcap = errors.New("cannot write --pcap file")

// writeLabs writes the pcapng itself.
func writeLabs(f io.Writer, names []string, labs [][]capturedPacket) error {
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: names[0], LinkType: layers.LinkTypeEthernet, SnapLength: 262144},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "kadiag simulate"}})
	if err != nil {
		return err
	}
	for _, n := range names[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: n, LinkType: layers.LinkTypeEthernet, SnapLength: 262144}); err != nil {
			return err
		}
	}
	type rec struct {
		intf int
		p    capturedPacket
	}
	var all []rec
	for i, pkts := range labs {
		for _, p := range pkts {
			all = append(all, rec{i, p})
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].p.ci.Timestamp.Before(all[b].p.ci.Timestamp) })
	for _, r := range all {
		ci := r.p.ci
		ci.InterfaceIndex = r.intf
		if err := w.WritePacket(ci, r.p.data); err != nil {
			return err
		}
	}
	return w.Flush()
}
