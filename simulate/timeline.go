package simulate

import "time"

// Kinds of WireEvent.
const (
	WireData     = "data"
	WireProbe    = "probe"
	WireProbeAck = "probe-ack"
	WireRST      = "rst"
)

// WireEvent is one packet of the client link worth drawing on a timeline:
// data, a keepalive probe, its answer, a reset the client received. T is
// seconds from the scenario's start. Data segments less than 10 ms after the
// previous one in the same direction are folded into it.
type WireEvent struct {
	T          float64
	Kind       string
	FromClient bool
}

// mark records a packet for the timeline.
func (s *wireStats) mark(ts time.Time, start time.Time, kind string, fromClient bool) {
	t := ts.Sub(start).Seconds()
	if n := len(s.events); n > 0 && kind == WireData {
		if l := s.events[n-1]; l.Kind == WireData && l.FromClient == fromClient && t-l.T < 0.01 {
			return
		}
	}
	if len(s.events) < 5000 {
		s.events = append(s.events, WireEvent{T: round3(t), Kind: kind, FromClient: fromClient})
	}
}
