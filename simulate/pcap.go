package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writePcap writes every lab's client link as one pcapng file, an
// interface per lab named after its scenario, packets in time order. The
// file appears complete or not at all: temp file, fsync, rename.
func writePcap(path string, names []string, labs [][]capturedPacket) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w, err := pcapgo.NewNgWriterInterface(tmp, pcapgo.NgInterface{Name: names[0], LinkType: layers.LinkTypeEthernet, SnapLength: 262144},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "kadiag simulate"}})
	if err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	for _, n := range names[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: n, LinkType: layers.LinkTypeEthernet, SnapLength: 262144}); err != nil {
			return fmt.Errorf("pcap %s: %w", path, err)
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
			return fmt.Errorf("pcap %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pcap %s: %w", path, err)
	}
	return nil
}
