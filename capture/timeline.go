package capture

import "time"

// Kinds of TimelineEvent.
const (
	EventData     = "data"
	EventACK      = "ack" // a bare ACK: no data, not a probe's answer
	EventProbe    = "probe"
	EventProbeAck = "probe-ack"
	EventRST      = "rst"
	EventSYN      = "syn"
	EventFIN      = "fin"
)

// maxEvents bounds a flow's timeline; a flow of a long capture keeps its
// first events and its counters stay exact.
const maxEvents = 5000

// TimelineEvent is one moment of a flow, recorded when Options.Timeline is
// set (HTML and Markdown reports draw them). Data segments less than 10 ms
// and bare ACKs less than 10 ms after the previous one of the same kind and
// direction are folded into it.
type TimelineEvent struct {
	At         time.Time
	Kind       string
	FromClient bool
}

// timeline holds a flow's events; flows carry a pointer to it, nil unless
// asked for, so captures without timelines pay 8 bytes per flow.
type timeline struct {
	events []rawEvent
}

type rawEvent struct {
	ts   int64
	kind string
	dir  int8
}

// markSegment records what a segment of direction d was: an answer to a
// probe, data, a bare ACK, SYN, FIN, RST. Probes are recorded where they are
// recognised (recordProbe), possibly after the fact.
func (o *observer) markSegment(s *segment, d int, probeLike, probeAck bool) {
	switch {
	case probeAck:
		o.mark(EventProbeAck, s.ts, d)
	case s.seglen > 0 && !probeLike:
		o.mark(EventData, s.ts, d)
	case s.seglen == 0 && !probeLike && s.flags&(flagSYN|flagFIN|flagRST) == 0:
		o.mark(EventACK, s.ts, d)
	}
	switch {
	case s.flags&flagSYN != 0:
		o.mark(EventSYN, s.ts, d)
	case s.flags&flagFIN != 0:
		o.mark(EventFIN, s.ts, d)
	case s.flags&flagRST != 0:
		o.mark(EventRST, s.ts, d)
	}
}

// mark records an event of direction d at ts.
func (o *observer) mark(kind string, ts int64, d int) {
	tl := o.tl
	if len(tl.events) >= maxEvents {
		return
	}
	if n := len(tl.events); (kind == EventData || kind == EventACK) && n > 0 {
		if l := tl.events[n-1]; l.kind == kind && int(l.dir) == d && ts-l.ts < int64(10*time.Millisecond) {
			return
		}
	}
	tl.events = append(tl.events, rawEvent{ts, kind, int8(d)})
}

// timelineEvents converts the recorded events once the client is known.
func (o *observer) timelineEvents(client int) []TimelineEvent {
	if o.tl == nil || len(o.tl.events) == 0 {
		return nil
	}
	out := make([]TimelineEvent, len(o.tl.events))
	for i, e := range o.tl.events {
		out[i] = TimelineEvent{At: time.Unix(0, e.ts).UTC(), Kind: e.kind, FromClient: int(e.dir) == client}
	}
	return out
}
