package capture

import (
	"net/netip"
	"time"
)

// endpoint is one side of a flow: a 16-byte address (IPv4 as ::ffff:a.b.c.d)
// and a port. Fixed-size so a flow key hashes without allocating.
type endpoint struct {
	addr [16]byte
	port uint16
}

func (e endpoint) less(o endpoint) bool {
	for i := range e.addr {
		if e.addr[i] != o.addr[i] {
			return e.addr[i] < o.addr[i]
		}
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

// Per-segment marks Wireshark remembers for the last segment of a direction.
const (
	markKeepAlive       = 1 << iota // tcp.analysis.keep_alive
	markZeroWindowProbe             // tcp.analysis.zero_window_probe
)

// direction is the sequence state of one direction of a flow, the subset of
// Wireshark's tcp_flow_t that decides keep-alives, keep-alive ACKs, zero
// window probes and retransmissions. nextseq 0 means "not known yet", as in
// Wireshark.
type direction struct {
	nextseq   uint32
	lastack   uint32
	window    uint32
	lastMarks uint8
	baseSet   bool
	base      uint32
	fin       bool

	probes    int
	lastProbe int64 // ns; 0 before the first probe
	pending   bool  // last probe of this direction not answered yet
}

// flow is the state of one bidirectional TCP flow while packets stream by.
type flow struct {
	ep     [2]endpoint // ep[0] sends in direction 0
	dir    [2]direction
	client int8 // index of the client endpoint, -1 while unknown
	order  int  // position of the flow's first packet, for stable output

	first, last int64 // ns
	packets     uint64
	bytes       uint64

	probeAcks int
	// wiresharkKeepAlives counts what Wireshark flags tcp.analysis.keep_alive:
	// the probes plus zero window probes sent in keepalive form.
	wiresharkKeepAlives int
	unanswered          int
	zeroWindowProbes    int
	retransmissions     int
	rsts                int
	closed              bool // FIN or RST seen: silence after it is not idleness

	firstProbeIdle int64 // ns of silence before the first probe; -1 without probes
	maxGap         int64 // longest silence between packets while open, ns
	intervals      intervalHist
}

func newFlow(src, dst endpoint, order int) *flow {
	return &flow{ep: [2]endpoint{src, dst}, client: -1, order: order, firstProbeIdle: -1}
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

// add runs one segment through the flow: Wireshark's
// tcp_analyze_sequence_number for the flags kadiag reports, then the timing
// kadiag adds on top.
func (f *flow) add(s *segment, d int) {
	fwd, rev := &f.dir[d], &f.dir[1-d]
	var marks uint8
	keepAlive, keepAliveAck := false, false
	synFinRst := s.flags&(flagSYN|flagFIN|flagRST) != 0

	if !fwd.baseSet {
		fwd.base = s.seq
		fwd.baseSet = true
	}
	if f.client < 0 && s.flags&flagSYN != 0 {
		if s.flags&flagACK == 0 {
			f.client = int8(d)
		} else {
			f.client = int8(1 - d)
		}
	}

	// Wireshark checks in this order; a zero window probe ends the checks.
	zwp := s.seglen == 1 && s.seq == fwd.nextseq && rev.window == 0
	if zwp {
		marks |= markZeroWindowProbe
		f.zeroWindowProbes++
	} else {
		if (s.seglen == 0 || s.seglen == 1) && s.seq == fwd.nextseq-1 && !synFinRst {
			marks |= markKeepAlive
			f.wiresharkKeepAlives++
			if rev.window == 0 {
				// Linux probes a zero window with the same seq-1 segment a
				// keepalive uses (tcp_xmit_probe_skb); Wireshark flags it as a
				// keep-alive, but it proves nothing about keepalive.
				f.zeroWindowProbes++
			} else {
				keepAlive = true
			}
		}
		if s.seglen == 0 && s.window != 0 && s.window == fwd.window &&
			s.seq == fwd.nextseq && s.ack == fwd.lastack &&
			rev.lastMarks&markKeepAlive != 0 && !synFinRst {
			keepAliveAck = true
		}
	}
	if !zwp && marks&markKeepAlive == 0 && (s.seglen > 0 || s.flags&(flagSYN|flagFIN) != 0) {
		notAdvanced := fwd.nextseq != 0 && int32(s.seq-fwd.nextseq) < 0
		if s.seglen > 1 && fwd.nextseq-1 == s.seq {
			notAdvanced = false
		}
		if notAdvanced {
			f.retransmissions++
		}
	}

	next := s.seq + s.seglen
	if s.flags&(flagSYN|flagFIN) != 0 {
		next++
	}
	if (int32(next-fwd.nextseq) > 0 || fwd.nextseq == 0) && !zwp {
		fwd.nextseq = next
	}
	fwd.window = s.window
	fwd.lastack = s.ack
	fwd.lastMarks = marks

	// Timing: silence is measured between packets of the flow in either
	// direction, because any packet refreshes a middlebox's idle timer.
	if f.packets > 0 {
		gap := s.ts - f.last
		if gap > 0 && !f.closed && gap > f.maxGap {
			f.maxGap = gap
		}
	}
	if keepAlive {
		if f.firstProbeIdle < 0 {
			f.firstProbeIdle = max(s.ts-f.last, 0)
			if f.packets == 0 {
				f.firstProbeIdle = 0
			}
		}
		if fwd.lastProbe != 0 {
			f.intervals.add(time.Duration(max(s.ts-fwd.lastProbe, 0)))
		}
		if fwd.pending {
			f.unanswered++
		}
		fwd.probes++
		fwd.lastProbe = s.ts
		fwd.pending = true
	} else if rev.pending {
		// The kernel counts any segment from the peer as an answer to a probe;
		// Wireshark's keep-alive ACK is the usual, but not the only, one.
		rev.pending = false
	}
	if keepAliveAck {
		f.probeAcks++
	}
	if s.flags&flagRST != 0 {
		f.rsts++
		f.closed = true
	}
	if s.flags&flagFIN != 0 {
		fwd.fin = true
		if rev.fin {
			f.closed = true
		}
	}
	if f.packets == 0 {
		f.first = s.ts
	}
	if s.ts > f.last {
		f.last = s.ts
	}
	f.packets++
	f.bytes += uint64(s.iplen)
}
