package capture

import "time"

// observer is the timing side of a flow: packets and bytes, the silences
// between packets, the probes with their intervals and answers, RSTs and
// FINs, and the timeline. It takes the classifier's word for what each
// segment was.
type observer struct {
	first, last int64 // ns
	packets     uint64
	bytes       uint64
	lastDir     int8 // direction of the last packet
	closed      bool // FIN both ways or RST seen: silence after it is not idleness
	probed      bool // a probe was seen

	maxGap         int64 // longest silence between packets while open, ns
	firstProbeIdle int64 // ns of silence before the first probe; -1 when unknown
	intervals      intervalHist
	probeAcks      int32
	unanswered     int32
	rsts           int32
	dir            [2]observedDir

	tl *timeline // events, when Options.Timeline asks for them (timeline.go)
}

// observedDir is what the observer keeps per direction.
type observedDir struct {
	probes    int32
	pending   bool // the last probe this way is not answered yet
	fin       bool
	lastProbe int64 // ns; 0 before the first probe
}

// idle is the silence before a packet at ts: -1 for a flow's first packet.
func (o *observer) idle(ts int64) int64 {
	if o.packets == 0 {
		return -1
	}
	return max(ts-o.last, 0)
}

// probe records a keepalive probe sent in direction d at ts, after idle ns
// of silence (-1: unknown).
func (o *observer) probe(d int, ts, idle int64) {
	dir := &o.dir[d]
	if !o.probed {
		o.probed = true
		o.firstProbeIdle = idle
	}
	if dir.lastProbe != 0 {
		o.intervals.add(time.Duration(max(ts-dir.lastProbe, 0)))
	}
	if dir.pending {
		o.unanswered++
	}
	dir.probes++
	dir.lastProbe = ts
	if o.tl != nil {
		o.mark(EventProbe, ts, d)
	}
	dir.pending = true
}

// segment accounts for segment s of direction d, which came after idle ns
// of silence and which the classifier called c.
func (o *observer) segment(s *segment, d int, idle int64, c class) {
	// Silence is measured between packets of the flow in either direction,
	// because any packet refreshes a middlebox's idle timer.
	if idle > 0 && !o.closed && idle > o.maxGap {
		o.maxGap = idle
	}
	if c.probe {
		o.probe(d, s.ts, idle)
	} else if o.dir[1-d].pending {
		// The kernel counts any segment from the peer as an answer to a probe;
		// Wireshark's keep-alive ACK is the usual, but not the only, one.
		o.dir[1-d].pending = false
	}
	if c.probeAck {
		o.probeAcks++
	}
	if o.tl != nil {
		o.markSegment(s, d, c.probeLike, c.probeAck)
	}
	if s.flags&flagRST != 0 {
		o.rsts++
		o.closed = true
	}
	if s.flags&flagFIN != 0 {
		o.dir[d].fin = true
		if o.dir[1-d].fin {
			o.closed = true
		}
	}
	if o.packets == 0 {
		o.first = s.ts
	}
	o.lastDir = int8(d)
	if s.ts > o.last {
		o.last = s.ts
	}
	o.packets++
	o.bytes += uint64(s.iplen)
}
