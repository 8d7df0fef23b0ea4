package capture

import (
	"encoding/binary"
	"net/netip"
)

// endpoint is one side of a flow: a 16-byte address (IPv4 as ::ffff:a.b.c.d)
// and a port. Fixed-size so a flow key hashes without allocating.
type endpoint struct {
	addr [16]byte
	port uint16
}

// less orders endpoints by address bytes, then port.
func (e endpoint) less(o endpoint) bool {
	a, b := binary.BigEndian.Uint64(e.addr[:8]), binary.BigEndian.Uint64(o.addr[:8])
	if a == b {
		a, b = binary.BigEndian.Uint64(e.addr[8:]), binary.BigEndian.Uint64(o.addr[8:])
	}
	if a != b {
		return a < b
	}
	return e.port < o.port
}

func (e endpoint) String() string {
	a := netip.AddrFrom16(e.addr).Unmap()
	return netip.AddrPortFrom(a, e.port).String()
}

// flowKey names a bidirectional flow: the lower endpoint first.
type flowKey struct{ lo, hi endpoint }

// TCP flag bits as they sit in byte 13 of the header.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// flow is the state of one bidirectional TCP flow while packets stream by.
// Each segment goes through three stages: Wireshark's sequence analysis
// (wireshark.go: the flags tshark would give it), the probe classifier
// (probe.go: keepalive probe, zero window probe, answer, or neither), and
// the timing observer (observer.go: intervals, gaps, timeline).
type flow struct {
	// Fields are ordered (and counters 32 bits) so that a flow fits the
	// allocator's 416-byte class (TestFlowSize): a capture's flows are all
	// held in memory until the report.
	ep     [2]endpoint // ep[0] sends in direction 0
	client int8        // index of the client endpoint, -1 while unknown
	isnSet [2]bool
	hash   uint64    // pairHash of ep, the flow table's
	order  int       // position of the flow's first packet, for stable output
	isn    [2]uint32 // each direction's first sequence number

	seq [2]seqState
	pr  [2]probeDir
	obs observer

	// wiresharkKeepAlives counts what Wireshark flags tcp.analysis.keep_alive:
	// the probes plus zero window probes sent in keepalive form.
	wiresharkKeepAlives    int32
	wiresharkKeepAliveAcks int32
	zeroWindowProbes       int32
	retransmissions        int32
}

// newFlow starts a flow whose first segment goes from src to dst.
func newFlow(src, dst endpoint, order int) *flow {
	return &flow{ep: [2]endpoint{src, dst}, client: -1, order: order, obs: observer{firstProbeIdle: -1}}
}

// segment is the part of a TCP segment the analysis needs.
type segment struct {
	ts     int64 // ns since the epoch
	src    endpoint
	dst    endpoint
	seq    uint32
	ack    uint32
	flags  uint8
	window uint32
	seglen uint32 // TCP payload length as sent (not as captured)
	iplen  uint32 // IP packet length as sent
}

// add runs segment s of direction d through the flow's three stages.
func (f *flow) add(s *segment, d int) {
	if !f.isnSet[d] {
		f.isn[d], f.isnSet[d] = s.seq, true
	}
	if f.client < 0 && s.flags&flagSYN != 0 {
		f.client = int8(d)
		if s.flags&flagACK != 0 {
			f.client = int8(1 - d)
		}
	}
	m := wiresharkMarks(&f.seq[d], &f.seq[1-d], s)
	if m.keepAlive {
		f.wiresharkKeepAlives++
	}
	if m.keepAliveAck {
		f.wiresharkKeepAliveAcks++
	}
	idle := f.obs.idle(s.ts)
	c := f.classify(s, d, m, idle)
	if c.retransmission {
		f.retransmissions++
	}
	f.obs.segment(s, d, idle, c)
}
