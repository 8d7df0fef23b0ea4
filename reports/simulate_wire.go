package reports

import "github.com/kadiag/kadiag/simulate"

// wireEvents turns the client link's packets of a scenario into timeline
// events.
func wireEvents(sc simulate.ScenarioResult) []Event {
	var out []Event
	side := func(fromClient bool) string {
		if fromClient {
			return "client"
		}
		return "server"
	}
	for _, w := range sc.Wire {
		e := Event{T: w.T}
		switch w.Kind {
		case simulate.WireData:
			e.Kind, e.Label = EventData, "data from the "+side(w.FromClient)
		case simulate.WireProbe:
			e.Kind, e.Label = EventProbe, "keepalive probe from the client"
		case simulate.WireProbeAck:
			e.Kind, e.Label = EventProbeAck, "probe answered"
		case simulate.WireRST:
			e.Kind, e.Label = EventRST, "RST to the client"
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}
