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

type rawEvent struct {
	ts   int64
	kind string
	dir  int8
}

// mark records an event of direction d at ts when the flow keeps a timeline.
func (f *flow) mark(kind string, ts int64, d int) {
	if !f.timeline || len(f.events) >= maxEvents {
		return
	}
	if n := len(f.events); (kind == EventData || kind == EventACK) && n > 0 {
		if l := f.events[n-1]; l.kind == kind && int(l.dir) == d && ts-l.ts < int64(10*time.Millisecond) {
			return
		}
	}
	f.events = append(f.events, rawEvent{ts, kind, int8(d)})
}

// timelineEvents converts the recorded events once the client is known.
func (f *flow) timelineEvents(client int) []TimelineEvent {
	if len(f.events) == 0 {
		return nil
	}
	out := make([]TimelineEvent, len(f.events))
	for i, e := range f.events {
		out[i] = TimelineEvent{At: time.Unix(0, e.ts).UTC(), Kind: e.kind, FromClient: int(e.dir) == client}
	}
	return out
}
