package capture

// The probe classifier decides which segments are keepalive probes and
// which answer them. With the handshake captured Wireshark's marks decide,
// less the zero window probes Linux sends in keep-alive form. Without it
// (the capture began mid-connection) Wireshark's rule cannot see a probe
// until data has flowed, so the classifier also recognises a probe as a
// segment one below what the peer acknowledged, as a repeat of the previous
// small segment with no packet from the peer in between, or by its answer,
// which acknowledges the probe's sequence number plus one. Each direction
// is a small state machine:
//
//	none ── small segment ───────────────────────────▶ candidate
//	candidate ── repeated, peer seen ──────────────────▶ probe (both recorded)
//	candidate ── repeated, peer never seen ──────────────▶ held
//	candidate ── peer ACKs cand.seq+1 (window > 0) ────────▶ probe (recorded late)
//	candidate ── peer ACKs cand.seq+1 (zero window) ───────▶ zero window probe
//	held ── peer's first segment: window > 0 / zero ────▶ probes / zero window probes
//	held ── end of capture ─────────────────────────────▶ probes
//	any ── any other segment ───────────────────────────▶ none
type candState uint8

const (
	noCandidate   candState = iota
	candidate               // a small segment that may prove a probe
	candidateHeld           // the candidate is already in held
)

// probeDir is the classifier's state of one direction.
type probeDir struct {
	seen    bool // a segment went this way
	ackSeen bool // one had the ACK flag: the seqState's lastack is valid

	// lastProbe: the last segment this way was a probe; its answer
	// acknowledges lastProbeSeq+1.
	lastProbe    bool
	state        candState
	lastProbeSeq uint32

	cand probeCandidate
	held []heldProbe // probes waiting for the peer's window
}

// probeCandidate is a small segment seen mid-connection that is a probe if
// a repeat or the peer's answer proves it later.
type probeCandidate struct {
	seq, ack, window uint32
	seglen           uint32
	ts, idle         int64
}

// heldProbe is a probe seen before the peer's window was known.
type heldProbe struct{ ts, idle int64 }

// maxHeld bounds the held probes of a direction; a peer silent for that
// many probes is not answering anyway.
const maxHeld = 64

// class is what the classifier made of one segment.
type class struct {
	probe     bool // a keepalive probe, sent now
	probeLike bool // probe-shaped (probe, zero window probe, held): not data in the timeline
	probeAck  bool // an answer to a probe
	// retransmission: Wireshark's "not advanced" on a segment that is no
	// probe.
	retransmission bool
}

// classify runs segment s of direction d, with Wireshark's marks m and the
// silence idle before it (-1 unknown), through the classifier. Probes it
// recognises late (held, or proved by a repeat or an answer) are recorded
// with the observer at once, with their own time.
func (f *flow) classify(s *segment, d int, m wsMarks, idle int64) class {
	fwd, rev := &f.pr[d], &f.pr[1-d]
	synFinRst := s.flags&(flagSYN|flagFIN|flagRST) != 0
	small := s.seglen <= 1 && !synFinRst
	c := class{probe: m.keepAlive, probeAck: m.keepAliveAck}

	if !fwd.seen && len(rev.held) > 0 {
		// The peer's first word decides what the held probes were.
		if s.window == 0 {
			f.zeroWindowProbes += int32(len(rev.held))
			rev.held = rev.held[:0]
		} else {
			f.flushHeld(1 - d)
			rev.lastProbe, rev.lastProbeSeq = true, rev.cand.seq
		}
		rev.state = noCandidate
	}
	midStream := f.client < 0
	var retroFwd, retroRev, hold bool
	if midStream && !m.zeroWindowProbe && !c.probe {
		sameDir := f.obs.packets > 0 && int(f.obs.lastDir) == d
		switch {
		case small && rev.ackSeen && s.seq == f.seq[1-d].lastack-1:
			c.probe = true
		case small && sameDir && fwd.state != noCandidate && s.seq == fwd.cand.seq && s.ack == fwd.cand.ack && s.window == fwd.cand.window:
			if rev.seen {
				c.probe, retroFwd = true, true
			} else {
				// The peer's window is unknown, so a keepalive cannot be told
				// from a zero window probe yet: hold them until the peer
				// speaks (or the capture ends).
				hold = true
			}
		case s.seglen == 0 && !synFinRst && !sameDir && rev.state != noCandidate && rev.cand.seglen == 0 && s.ack == rev.cand.seq+1:
			c.probeAck, retroRev = true, true
		}
		if s.seglen == 0 && !synFinRst && rev.lastProbe && s.ack == rev.lastProbeSeq+1 {
			c.probeAck = true
		}
	}
	c.retransmission = m.notAdvanced && !c.probe
	isProbe := false
	switch {
	case m.zeroWindowProbe:
		f.zeroWindowProbes++
	case c.probe && rev.seen && f.seq[1-d].window == 0:
		// Linux probes a zero window with the same seq-1 segment a keepalive
		// uses (tcp_xmit_probe_skb); Wireshark flags it as a keep-alive, but
		// it proves nothing about keepalive.
		f.zeroWindowProbes++
	case c.probe:
		isProbe = true
		fwd.lastProbeSeq = s.seq
	}
	fwd.lastProbe = isProbe
	if s.flags&flagACK != 0 {
		fwd.ackSeen = true
	}
	fwd.seen = true

	if retroFwd {
		f.obs.probe(d, fwd.cand.ts, fwd.cand.idle)
	}
	if retroRev && s.window == 0 {
		// Answered with a zero window: it was a zero window probe.
		f.zeroWindowProbes++
		c.probeAck = false
	} else if retroRev {
		f.obs.probe(1-d, rev.cand.ts, rev.cand.idle)
		rev.lastProbe, rev.lastProbeSeq = true, rev.cand.seq
	}
	if hold {
		if fwd.state != candidateHeld {
			fwd.held = append(fwd.held, heldProbe{fwd.cand.ts, fwd.cand.idle})
		}
		if len(fwd.held) < maxHeld {
			fwd.held = append(fwd.held, heldProbe{s.ts, idle})
		}
		fwd.state = candidateHeld
	} else {
		fwd.state = noCandidate
	}
	rev.state = noCandidate
	if midStream && small && !c.probe && !m.zeroWindowProbe && !hold {
		fwd.state = candidate
		fwd.cand = probeCandidate{seq: s.seq, ack: s.ack, window: s.window, seglen: s.seglen, ts: s.ts, idle: idle}
	}
	c.probeLike = c.probe || m.zeroWindowProbe || hold
	c.probe = isProbe
	return c
}

// flushHeld counts the held probes of direction d as keepalive probes.
func (f *flow) flushHeld(d int) {
	for _, h := range f.pr[d].held {
		f.obs.probe(d, h.ts, h.idle)
	}
	f.pr[d].held = f.pr[d].held[:0]
}
