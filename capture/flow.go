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
	markProbe                       // a keepalive probe by kadiag's rules
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
	ackSeen   bool // lastack is valid
	seen      bool // a segment went this way

	lastProbeSeq uint32
	cand         candidate   // mid-connection: a small segment that may prove a probe
	held         []heldProbe // mid-connection probes waiting for the peer's window

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
	wiresharkKeepAlives    int
	wiresharkKeepAliveAcks int
	unanswered             int
	zeroWindowProbes       int
	retransmissions        int
	rsts                   int
	closed                 bool // FIN or RST seen: silence after it is not idleness

	lastDir        int   // direction of the last packet
	probed         bool  // a probe was seen
	firstProbeIdle int64 // ns of silence before the first probe; -1 when unknown
	maxGap         int64 // longest silence between packets while open, ns
	intervals      intervalHist

	tl *timeline // events, when Options.Timeline asks for them (timeline.go)
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
	small := s.seglen <= 1 && !synFinRst
	zwp := s.seglen == 1 && s.seq == fwd.nextseq && rev.window == 0
	wsKeepAlive := !zwp && small && s.seq == fwd.nextseq-1
	wsKeepAliveAck := !zwp && s.seglen == 0 && !synFinRst && s.window != 0 && s.window == fwd.window &&
		s.seq == fwd.nextseq && s.ack == fwd.lastack && rev.lastMarks&markKeepAlive != 0
	probe, probeAck := wsKeepAlive, wsKeepAliveAck
	var retroFwd, retroRev, holdFwd bool
	if !fwd.seen && len(rev.held) > 0 {
		// The peer's first word decides what the held probes were.
		if s.window == 0 {
			f.zeroWindowProbes += len(rev.held)
			rev.held = rev.held[:0]
		} else {
			f.flushHeld(1 - d)
			rev.lastMarks |= markProbe
			rev.lastProbeSeq = rev.cand.seq
		}
		rev.cand.valid = false
	}
	if f.client < 0 && !zwp && !probe {
		// No handshake captured: the capture began mid-connection, and
		// Wireshark's rule cannot see a probe until data has flowed. kadiag
		// then also recognises a probe as a segment one below what the peer
		// acknowledged, as a repeat of the previous small segment with no
		// packet from the peer in between, or by its answer, which
		// acknowledges the probe's sequence number plus one.
		sameDir := f.packets > 0 && f.lastDir == d
		switch {
		case small && rev.ackSeen && s.seq == rev.lastack-1:
			probe = true
		case small && sameDir && fwd.cand.valid && s.seq == fwd.cand.seq && s.ack == fwd.cand.ack && s.window == fwd.cand.window:
			if rev.seen {
				probe, retroFwd = true, true
			} else {
				// The peer's window is unknown, so a keepalive cannot be told
				// from a zero window probe yet: hold them until the peer
				// speaks (or the capture ends).
				holdFwd = true
			}
		case s.seglen == 0 && !synFinRst && !sameDir && rev.cand.valid && rev.cand.seglen == 0 && s.ack == rev.cand.seq+1:
			probeAck, retroRev = true, true
		}
		if s.seglen == 0 && !synFinRst && rev.lastMarks&markProbe != 0 && s.ack == rev.lastProbeSeq+1 {
			probeAck = true
		}
	}
	if wsKeepAlive {
		marks |= markKeepAlive
		f.wiresharkKeepAlives++
	}
	if wsKeepAliveAck {
		f.wiresharkKeepAliveAcks++
	}
	switch {
	case zwp:
		marks |= markZeroWindowProbe
		f.zeroWindowProbes++
	case probe && rev.seen && rev.window == 0:
		// Linux probes a zero window with the same seq-1 segment a keepalive
		// uses (tcp_xmit_probe_skb); Wireshark flags it as a keep-alive, but
		// it proves nothing about keepalive.
		f.zeroWindowProbes++
	case probe:
		keepAlive = true
		marks |= markProbe
		fwd.lastProbeSeq = s.seq
	}
	keepAliveAck = probeAck
	if !zwp && !probe && (s.seglen > 0 || s.flags&(flagSYN|flagFIN) != 0) {
		notAdvanced := fwd.nextseq != 0 && int32(s.seq-fwd.nextseq) < 0
		if s.seglen > 1 && fwd.nextseq-1 == s.seq {
			notAdvanced = false
		}
		if notAdvanced {
			f.retransmissions++
		}
	}
	if s.flags&flagACK != 0 {
		fwd.ackSeen = true
	}
	fwd.seen = true

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
	idle := int64(-1)
	if f.packets > 0 {
		idle = max(s.ts-f.last, 0)
	}
	if retroFwd {
		f.recordProbe(d, fwd.cand.ts, fwd.cand.idle)
	}
	if retroRev && s.window == 0 {
		// Answered with a zero window: it was a zero window probe.
		f.zeroWindowProbes++
		keepAliveAck = false
	} else if retroRev {
		f.recordProbe(1-d, rev.cand.ts, rev.cand.idle)
		rev.lastMarks |= markProbe
		rev.lastProbeSeq = rev.cand.seq
	}
	if holdFwd {
		if !fwd.cand.held {
			fwd.held = append(fwd.held, heldProbe{fwd.cand.ts, fwd.cand.idle})
		}
		if len(fwd.held) < maxHeld {
			fwd.held = append(fwd.held, heldProbe{s.ts, idle})
		}
		fwd.cand.held = true
	} else {
		fwd.cand.valid = false
	}
	rev.cand.valid = false
	if f.client < 0 && small && !probe && !zwp && !holdFwd {
		fwd.cand = candidate{valid: true, seq: s.seq, ack: s.ack, window: s.window, seglen: s.seglen, ts: s.ts, idle: idle}
	}
	if keepAlive {
		f.recordProbe(d, s.ts, idle)
	} else if rev.pending {
		// The kernel counts any segment from the peer as an answer to a probe;
		// Wireshark's keep-alive ACK is the usual, but not the only, one.
		rev.pending = false
	}
	if keepAliveAck {
		f.probeAcks++
	}
	if f.tl != nil {
		f.markSegment(s, d, probe || zwp || holdFwd, keepAliveAck)
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
	f.lastDir = d
	if s.ts > f.last {
		f.last = s.ts
	}
	f.packets++
	f.bytes += uint64(s.iplen)
}

// candidate is a small segment seen mid-connection that is a probe if a
// repeat or the peer's answer proves it later.
type candidate struct {
	valid            bool
	held             bool // already in held
	seq, ack, window uint32
	seglen           uint32
	ts, idle         int64
}

// recordProbe counts a keepalive probe sent in direction d at ts, after
// idle ns of silence (-1: unknown).
func (f *flow) recordProbe(d int, ts, idle int64) {
	dir := &f.dir[d]
	if !f.probed {
		f.probed = true
		f.firstProbeIdle = idle
	}
	if dir.lastProbe != 0 {
		f.intervals.add(time.Duration(max(ts-dir.lastProbe, 0)))
	}
	if dir.pending {
		f.unanswered++
	}
	dir.probes++
	dir.lastProbe = ts
	if f.tl != nil {
		f.mark(EventProbe, ts, d)
	}
	dir.pending = true
}

// heldProbe is a probe seen before the peer's window was known.
type heldProbe struct{ ts, idle int64 }

// maxHeld bounds the held probes of a direction; a peer silent for that
// many probes is not answering anyway.
const maxHeld = 64

// flushHeld counts the held probes of direction d as keepalive probes.
func (f *flow) flushHeld(d int) {
	for _, h := range f.dir[d].held {
		f.recordProbe(d, h.ts, h.idle)
	}
	f.dir[d].held = f.dir[d].held[:0]
}
