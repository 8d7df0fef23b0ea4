package reports

import "fmt"

// Document is a report laid out for reading: the shape the Markdown and HTML
// renderers share, so both say the same thing.
type Document struct {
	// Title names the command, e.g. "kadiag sockets".
	Title string
	// Status is the overall verdict shown first.
	Status Status
	// Summary is one sentence under the title: what was checked, and how it went.
	Summary  string
	Sections []Section
}

// Status is a document's overall verdict.
type Status string

// Statuses a document can have.
const (
	StatusOK     Status = "ok"
	StatusFailed Status = "failed"
	StatusInfo   Status = "info"
)

// Section is one heading with its content, in this order: paragraphs, a
// list, a grid, a code block, timelines.
type Section struct {
	Heading   string
	Text      []string
	List      []string
	Grid      *Grid
	Code      string
	CodeLang  string
	Timelines []Timeline
}

// Grid is a table of cells with a header row.
type Grid struct {
	Header []string
	Rows   [][]Cell
}

// Cell is one table cell; Tone marks verdicts.
type Cell struct {
	Text string
	Tone Tone
}

// Tone colours a verdict: good (green), bad (red), warn (amber) or none.
type Tone string

// Tones of a cell or a timeline.
const (
	Plain Tone = ""
	Good  Tone = "good"
	Bad   Tone = "bad"
	Warn  Tone = "warn"
)

// Timeline is what happened to one flow over time, drawn as an SVG lane in
// HTML and as a list of events in Markdown.
type Timeline struct {
	// Title names the flow (client -> server, or the scenario).
	Title string
	// Outcome says how it ended ("response after 10s", "reset", "timeout").
	Outcome string
	Tone    Tone
	// EndS is the length of the lane in seconds from the flow's start.
	EndS float64
	// LimitS, when set, is the middlebox's idle timeout, drawn as a scale bar.
	LimitS float64
	Events []Event
}

// Event is one moment of a timeline, in seconds from the flow's start.
type Event struct {
	T     float64
	Kind  EventKind
	Label string
}

// EventKind is what an event shows; each kind has its own mark.
type EventKind string

// The event kinds a timeline draws.
const (
	EventData     EventKind = "data"      // a data segment (request, response bytes)
	EventAck      EventKind = "ack"       // a bare ACK: it refreshes the middlebox too
	EventProbe    EventKind = "probe"     // a keepalive probe sent
	EventProbeAck EventKind = "probe-ack" // the answer to a probe
	EventExpiry   EventKind = "expiry"    // the middlebox forgets the flow
	EventRST      EventKind = "rst"       // a reset
	EventResponse EventKind = "response"  // the awaited response arrived
	EventTimeout  EventKind = "timeout"   // the client gave up
	EventNote     EventKind = "note"      // anything else worth a mark (conntrack events)
)

// eventKinds lists kinds in legend order.
var eventKinds = []EventKind{EventData, EventAck, EventProbe, EventProbeAck, EventExpiry, EventRST, EventResponse, EventTimeout, EventNote}

// Describe names an event kind for people.
func (k EventKind) Describe() string {
	switch k {
	case EventData:
		return "data"
	case EventAck:
		return "ACK"
	case EventProbe:
		return "keepalive probe"
	case EventProbeAck:
		return "probe answered"
	case EventExpiry:
		return "middlebox forgets the flow"
	case EventRST:
		return "reset (RST)"
	case EventResponse:
		return "response arrives"
	case EventTimeout:
		return "client gives up"
	}
	return "event"
}

// plural writes "1 probe", "2 probes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
