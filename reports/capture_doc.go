package reports

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/kadiag/kadiag/capture"
)

// maxCaptureTimelines bounds the flows drawn; at-risk flows come first.
const maxCaptureTimelines = 20

// Document lays a capture out: the flows table with verdicts and, when the
// capture kept a timeline (-o html / -o markdown), one lane per flow with
// its data, probes, answers, RSTs and where a middlebox with the configured
// idle limit forgets it.
func (c Capture) Document() Document {
	r := c.Result
	s := r.Summary
	d := Document{Title: "kadiag capture", Status: StatusOK,
		Summary: fmt.Sprintf("%d flows: %d ok, %d at risk against a middlebox idle limit of %s; %d packets, %d TCP, %d keepalive probes.",
			s.Flows, s.OK, s.AtRisk, secs(r.MaxIdleS), s.Packets, s.TCPPackets, s.Probes)}
	if c.Failed() || r.ReadError != "" {
		d.Status = StatusFailed
	}
	if r.Source != "" {
		d.Summary = r.Source + ": " + d.Summary
	}
	g := &Grid{Header: []string{"client", "server", "verdict", "packets", "probes (client/server)", "answered / unanswered", "first probe after", "probe interval min/median/max", "longest silence", "RSTs", "reason"}}
	for _, f := range r.Flows {
		interval, first := probeTiming(&f, " / ")
		verdict, tone := f.Verdict, Good
		if f.Verdict != capture.VerdictOK || f.Assertion == capture.AssertFail {
			tone = Bad
		}
		if f.Assertion == capture.AssertFail {
			verdict += ", assertion failed"
		}
		g.Rows = append(g.Rows, []Cell{{Text: f.Client}, {Text: f.Server}, {Text: verdict, Tone: tone}, {Text: strconv.FormatUint(f.Packets, 10)},
			{Text: fmt.Sprintf("%d (%d/%d)", f.Probes, f.ClientProbes, f.ServerProbes)}, {Text: strconv.Itoa(f.ProbeAcks) + " / " + strconv.Itoa(f.UnansweredProbes)},
			{Text: first}, {Text: interval}, {Text: secs(f.MaxGapS)},
			{Text: strconv.Itoa(f.RSTs)}, {Text: f.Reason}})
	}
	d.Sections = append(d.Sections, Section{Heading: "Flows", Grid: g})
	var tls []Timeline
	order := make([]int, len(r.Flows))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return r.Flows[order[a]].Verdict != capture.VerdictOK && r.Flows[order[b]].Verdict == capture.VerdictOK
	})
	for _, i := range order {
		f := r.Flows[i]
		if len(f.Events) == 0 {
			continue
		}
		tls = append(tls, flowTimeline(f, time.Duration(r.MaxIdleS*float64(time.Second)), r.End))
		if len(tls) == maxCaptureTimelines {
			break
		}
	}
	if len(tls) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Timelines",
			Text:      []string{"Per flow from its first packet: data, keepalive probes (above the line) and their answers (below), resets, and where a middlebox with the idle limit forgets the flow (green: remembered, red: forgotten)."},
			Timelines: tls})
	}
	var notes []string
	notes = append(notes, r.Notes...)
	if r.ReadError != "" {
		notes = append(notes, "read error: "+r.ReadError)
	}
	if len(notes) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Notes", List: notes})
	}
	return d
}

// flowTimeline turns a flow's recorded events into a timeline. The expiry
// is derived: the first silence of at least the idle limit, at its start
// plus the limit (or the silence at the end of the capture).
func flowTimeline(f capture.Flow, maxIdle time.Duration, captureEnd time.Time) Timeline {
	t := Timeline{Title: f.Client + " → " + f.Server, Tone: Good, LimitS: maxIdle.Seconds()}
	end := f.End
	if !f.Closed && captureEnd.After(end) {
		end = captureEnd
	}
	t.EndS = end.Sub(f.Start).Seconds()
	rel := func(at time.Time) float64 { return at.Sub(f.Start).Seconds() }
	side := func(fromClient bool) string {
		if fromClient {
			return "client"
		}
		return "server"
	}
	expired := false
	prev := f.Start
	addExpiry := func(from time.Time) {
		t.Events = append(t.Events, Event{T: rel(from.Add(maxIdle)), Kind: EventExpiry,
			Label: fmt.Sprintf("a middlebox with a %s idle limit forgets the flow", HumanDuration(maxIdle))})
		expired = true
	}
	// Silence after a reset or both FINs is not idleness (as the analysis
	// measures it).
	closed, fins := false, map[bool]bool{}
	for _, e := range f.Events {
		if !expired && !closed && maxIdle > 0 && e.At.Sub(prev) >= maxIdle {
			addExpiry(prev)
		}
		prev = e.At
		ev := Event{T: rel(e.At)}
		switch e.Kind {
		case capture.EventData:
			ev.Kind, ev.Label = EventData, "data from the "+side(e.FromClient)
			if expired && !e.FromClient {
				ev.Label = "data from the server after the flow was forgotten"
			}
		case capture.EventACK:
			ev.Kind, ev.Label = EventAck, "ACK from the "+side(e.FromClient)
		case capture.EventProbe:
			ev.Kind, ev.Label = EventProbe, "keepalive probe from the "+side(e.FromClient)
		case capture.EventProbeAck:
			ev.Kind, ev.Label = EventProbeAck, "probe answered by the "+side(e.FromClient)
		case capture.EventRST:
			ev.Kind, ev.Label = EventRST, "RST from the "+side(e.FromClient)
			closed = true
		default:
			ev.Kind, ev.Label = EventNote, e.Kind+" from the "+side(e.FromClient)
			if e.Kind == capture.EventFIN {
				fins[e.FromClient] = true
				closed = closed || len(fins) == 2
			}
		}
		t.Events = append(t.Events, ev)
	}
	if !expired && !f.Closed && maxIdle > 0 && end.Sub(prev) >= maxIdle {
		addExpiry(prev)
	}
	t.Outcome = fmt.Sprintf("%s, %d answered, longest silence %s", plural(f.Probes, "probe"), f.ProbeAcks, secs(f.MaxGapS))
	if f.Verdict != capture.VerdictOK || f.Assertion == capture.AssertFail {
		t.Tone = Bad
		t.Outcome = f.Reason
	}
	return t
}
