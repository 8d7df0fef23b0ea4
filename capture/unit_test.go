package capture

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/bpf"
)

func TestIntervalHist(t *testing.T) {
	var h intervalHist
	for _, ms := range []int{60000, 60003, 59998, 60001, 75000} {
		h.add(time.Duration(ms) * time.Millisecond)
	}
	if h.min != 59998*time.Millisecond || h.max != 75*time.Second || h.median() != 60001*time.Millisecond {
		t.Errorf("min %v median %v max %v", h.min, h.median(), h.max)
	}
	// Many distinct intervals: bounded memory, median close to the truth.
	var big intervalHist
	for i := 0; i < 10000; i++ {
		big.add(time.Duration(1000+i) * time.Millisecond)
	}
	if len(big.buckets) > maxBuckets {
		t.Errorf("%d buckets", len(big.buckets))
	}
	if m := big.median(); m < 5900*time.Millisecond || m > 6100*time.Millisecond {
		t.Errorf("median %v, want about 6s", m)
	}
	if big.min != time.Second || big.max != 10999*time.Millisecond || big.n != 10000 {
		t.Errorf("min %v max %v n %d", big.min, big.max, big.n)
	}
}

// TestFilter runs the kernel filter in x/net/bpf's VM over real frames:
// every TCP frame passes (cut to the snaplen), others do not; with ports,
// only those flows pass.
func TestFilter(t *testing.T) {
	frames := readFrames(t, filepath.Join(fixtureDir, "eth.pcap"))
	run := func(ports map[uint16]bool) (passed int, byPort map[uint16]int) {
		prog, err := tcpFilter(14, ports, 128, false)
		if err != nil {
			t.Fatal(err)
		}
		insns := make([]bpf.Instruction, len(prog))
		for i, r := range prog {
			insns[i] = r.Disassemble()
		}
		vm, err := bpf.NewVM(insns)
		if err != nil {
			t.Fatal(err)
		}
		byPort = map[uint16]int{}
		d := newDecoder()
		for _, f := range frames {
			n, err := vm.Run(f.data)
			if err != nil {
				t.Fatal(err)
			}
			var seg segment
			isTCPFrame := d.decode(1, f.data, &seg) == isTCP
			if n > 0 {
				passed++
				byPort[seg.dst.port]++
				byPort[seg.src.port]++
				if n != 128 {
					t.Errorf("filter keeps %d bytes, want the snaplen 128", n)
				}
				if !isTCPFrame {
					t.Errorf("non-TCP frame passed")
				}
			} else if ports == nil && isTCPFrame {
				t.Errorf("TCP frame rejected: %x", f.data[:40])
			}
		}
		return passed, byPort
	}
	all, _ := run(nil)
	if all != len(frames) {
		t.Errorf("%d of %d frames passed", all, len(frames))
	}
	_, byPort := run(map[uint16]bool{portKeepalive: true, portIPv6: true})
	plain := byPort
	// Tags left in the frame (QinQ's inner tag, or no VLAN offload).
	for _, vids := range [][]uint16{{42}, {100, 42}} {
		frames = mapFrames(readFrames(t, filepath.Join(fixtureDir, "eth.pcap")), tag(vids...))
		if n, _ := run(nil); n != len(frames) {
			t.Errorf("tags %v: %d of %d frames passed", vids, n, len(frames))
		}
		if _, bp := run(map[uint16]bool{portKeepalive: true, portIPv6: true}); bp[portKeepalive] != plain[portKeepalive] || bp[portIPv6] != plain[portIPv6] {
			t.Errorf("tags %v: ports filter %v, untagged %v", vids, bp, plain)
		}
	}
	frames = readFrames(t, filepath.Join(fixtureDir, "eth.pcap"))
	for p, n := range byPort {
		if p < portKeepalive || p > portServerKA {
			continue // the clients' ephemeral ports
		}
		if (p == portKeepalive || p == portIPv6) != (n > 0) {
			t.Errorf("port %d: %d frames passed", p, n)
		}
	}
	if byPort[portKeepalive] == 0 || byPort[portIPv6] == 0 {
		t.Errorf("ports filter passed nothing of its own flows: %v", byPort)
	}
	// A raw IP device: the same frames without their Ethernet header.
	prog, _ := tcpFilter(0, nil, 96, false)
	insns := make([]bpf.Instruction, len(prog))
	for i, r := range prog {
		insns[i] = r.Disassemble()
	}
	vm, _ := bpf.NewVM(insns)
	for _, f := range frames {
		if n, _ := vm.Run(ipOf(f.data)); n != 96 {
			t.Fatalf("raw IP TCP frame: filter returned %d", n)
		}
	}
	if n, _ := vm.Run([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 53, 0, 53, 0, 8, 0, 0}); n != 0 {
		t.Errorf("UDP passed the filter")
	}
}

// TestFilterManyPorts: the largest port list still assembles (jumps within
// classic BPF's reach), and more ports fall back to all of TCP.
func TestFilterManyPorts(t *testing.T) {
	ports := map[uint16]bool{}
	for p := uint16(1); p <= maxFilterPorts; p++ {
		ports[p] = true
	}
	if _, err := tcpFilter(14, ports, 128, true); err != nil {
		t.Fatalf("%d ports: %v", len(ports), err)
	}
	ports[9999] = true
	prog, err := tcpFilter(14, ports, 128, true)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := tcpFilter(14, nil, 128, true)
	if len(prog) != len(all) {
		t.Errorf("%d ports: %d instructions, want the all-TCP filter's %d", len(ports), len(prog), len(all))
	}
}

// TestZeroAlloc: decoding frames of every link type and feeding packets of
// a known flow allocate nothing, so memory stays flat however long the
// capture.
func TestZeroAlloc(t *testing.T) {
	for _, name := range []string{"eth.pcap", "any-sll2.pcap", "raw.pcap", "qinq.pcap", "null.pcap", "multi.pcapng"} {
		frames := readFrames(t, filepath.Join(fixtureDir, name))
		d := newDecoder()
		var seg segment
		allocs := testing.AllocsPerRun(10, func() {
			for _, f := range frames {
				d.decode(f.lt, f.data, &seg)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations decoding %d frames", name, allocs, len(frames))
		}
	}
	frames := readFrames(t, filepath.Join(fixtureDir, "eth.pcap"))
	a := NewAnalyzer(Options{})
	for _, f := range frames {
		a.Feed(f.lt, f.data, f.ci)
	}
	last := frames[len(frames)-1] // a pure ACK of an existing flow
	if allocs := testing.AllocsPerRun(1000, func() { a.Feed(last.lt, last.data, last.ci) }); allocs != 0 {
		t.Errorf("Feed: %v allocations per packet", allocs)
	}
}
