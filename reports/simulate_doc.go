package reports

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kadiag/kadiag/simulate"
)

// Document lays a lab run out: the middlebox and the server, the scenarios
// side by side with their verdicts, and one timeline per scenario: the
// request, the middlebox's conntrack events, the moment it forgot the flow,
// the probes and answers on the client link, and how the wait ended.
func (s Simulate) Document() Document {
	r := s.Result
	d := Document{Title: "kadiag simulate", Status: StatusOK}
	if !r.Passed() {
		d.Status = StatusFailed
	}
	mb := "idle " + Seconds(int(r.IdleS))
	if r.Preset != "" {
		mb = r.Preset + ", " + mb
	}
	if r.Scale > 1 {
		mb += fmt.Sprintf(", scaled ÷%g to %s in the lab", r.Scale, secs(r.LabIdleS))
	}
	srv := "The server answers after " + secs(r.ResponseDelayS) + "."
	if len(r.Server) > 0 {
		srv = "Server: " + strings.Join(r.Server, " ") + "."
	}
	if len(r.Hops) > 1 {
		d.Summary = fmt.Sprintf("%d of %d scenarios as expected. Middleboxes: %s. %s", r.Summary.Passed, r.Summary.Scenarios, chainLine(r), srv)
	} else {
		d.Summary = fmt.Sprintf("%d of %d scenarios as expected. Middlebox: %s; after expiry: %s. %s", r.Summary.Passed, r.Summary.Scenarios, mb, r.After, srv)
	}
	g := &Grid{Header: []string{"scenario", "expected", "outcome", "result", "elapsed", "probes", "answered", "RSTs", "forgotten at", "evidence"}}
	var tls []Timeline
	var notes []string
	for _, sc := range r.Scenarios {
		res, tone := "as expected", Good
		if !sc.Passed {
			res, tone = "UNEXPECTED", Bad
		}
		exp := "-"
		if sc.ExpiredS != nil {
			exp = secs(*sc.ExpiredS)
		}
		g.Rows = append(g.Rows, []Cell{{Text: sc.Name}, {Text: sc.Expected}, {Text: sc.Outcome, Tone: outcomeTone(sc.Outcome)},
			{Text: res, Tone: tone}, {Text: secs(sc.ElapsedS)}, {Text: strconv.Itoa(sc.Probes)}, {Text: strconv.Itoa(sc.ProbeAcks)},
			{Text: strconv.Itoa(sc.Resets)}, {Text: exp}, {Text: s.evidence(sc)}})
		if len(sc.Hops) > 1 {
			for i, h := range sc.Hops {
				tls = append(tls, hopTimeline(r, sc, i, h))
			}
		} else {
			tls = append(tls, scenarioTimeline(r, sc))
		}
		for _, n := range sc.Notes {
			notes = append(notes, sc.Name+": "+n)
		}
	}
	d.Sections = append(d.Sections, Section{Heading: "Scenarios", Grid: g})
	d.Sections = append(d.Sections, Section{Heading: "Timelines",
		Text:      []string{fmt.Sprintf("Per scenario, in lab seconds from its start (×%g for real time): the request, the middlebox's conntrack events, when it forgot the flow (green: remembered, red: forgotten), keepalive probes and their answers on the client link, and how the wait ended.", max(r.Scale, 1))},
		Timelines: tls})
	if r.Pcap != "" {
		notes = append(notes, "packets of the client links: "+r.Pcap)
	}
	notes = append(notes, r.Warnings...)
	if len(notes) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Notes", List: notes})
	}
	return d
}

func outcomeTone(o string) Tone {
	if o == simulate.OutcomeOK {
		return Good
	}
	return Bad
}

// scenarioTimeline draws one scenario from its recorded evidence.
func scenarioTimeline(r *simulate.Result, sc simulate.ScenarioResult) Timeline {
	t := Timeline{Title: sc.Name, EndS: sc.ElapsedS, LimitS: r.LabIdleS, Tone: outcomeTone(sc.Outcome)}
	t.Outcome = fmt.Sprintf("%s after %s, %s, %d answered (expected %s)", sc.Outcome, secs(sc.ElapsedS), plural(sc.Probes, "probe"), sc.ProbeAcks, sc.Expected)
	if !sc.Passed {
		t.Tone = Bad
	} else if sc.Outcome != simulate.OutcomeOK {
		t.Tone = Warn
	}
	t.Events = append(t.Events, wireEvents(sc)...)
	for _, e := range sc.Conntrack {
		label := "conntrack " + e.Event
		if e.State != "" {
			label += " " + e.State
		}
		t.Events = append(t.Events, Event{T: e.T, Kind: EventNote, Label: label})
	}
	if sc.ExpiredS != nil {
		t.Events = append(t.Events, Event{T: *sc.ExpiredS, Kind: EventExpiry,
			Label: fmt.Sprintf("the middlebox forgets the flow (%s of silence)", secs(r.LabIdleS))})
	}
	end := Event{T: sc.ElapsedS}
	switch sc.Outcome {
	case simulate.OutcomeOK:
		end.Kind, end.Label = EventResponse, "the response arrives"
	case simulate.OutcomeReset:
		end.Kind, end.Label = EventRST, "the client gets a reset"
	default:
		end.Kind, end.Label = EventTimeout, "the client gives up: "+sc.Outcome
	}
	t.Events = append(t.Events, end)
	return t
}

// hopTimeline draws one hop of a chain for one scenario: the client link's
// packets, this hop's conntrack events and when it forgot the flow.
func hopTimeline(r *simulate.Result, sc simulate.ScenarioResult, i int, h simulate.HopResult) Timeline {
	t := scenarioTimeline(r, sc)
	t.Title = fmt.Sprintf("%s — hop %d %s", sc.Name, i+1, h.Name)
	t.LimitS = h.LabIdleS
	var evs []Event
	for _, e := range t.Events {
		if e.Kind != EventNote && e.Kind != EventExpiry {
			evs = append(evs, e)
		}
	}
	for _, e := range h.Conntrack {
		label := "conntrack " + e.Event
		if e.State != "" {
			label += " " + e.State
		}
		evs = append(evs, Event{T: e.T, Kind: EventNote, Label: label})
	}
	if h.ForgotAtS != nil {
		evs = append(evs, Event{T: *h.ForgotAtS, Kind: EventExpiry,
			Label: fmt.Sprintf("hop %d forgets the flow (%s of silence)", i+1, secs(h.LabIdleS))})
	}
	t.Events = evs
	return t
}
