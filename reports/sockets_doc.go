package reports

import (
	"fmt"
	"strconv"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/label"
)

// maxSocketTimelines bounds the per-socket timelines of an HTML or Markdown
// sockets report; beyond it the table says everything.
const maxSocketTimelines = 12

// Document lays the scan out per process: the namespace's sysctls, a table
// of sockets with their verdicts and, for connected sockets, what happens
// when the flow goes idle: the first probe against the middlebox's limit.
func (s Sockets) Document() Document {
	sum := s.Summary
	d := Document{Title: "kadiag sockets", Status: StatusOK,
		Summary: fmt.Sprintf("%d connected sockets: %d ok, %d at risk, %d local, %d unknown%s; %d listening. Middlebox idle limit %s.",
			sum.Sockets, sum.OK, sum.AtRisk, sum.Local, sum.Unknown, deadCount(sum), sum.Listening, Seconds(s.MaxIdleS))}
	if s.Failed() {
		d.Status = StatusFailed
	}
	var timelines []Timeline
	for _, p := range s.Processes {
		sec := Section{Heading: fmt.Sprintf("pid %d %s", p.PID, label.Clean(p.Comm))}
		if p.Pod != nil {
			sec.Heading += " in pod " + podName(p.Pod)
		}
		if p.PID == 0 {
			sec.Heading = "network namespace " + label.Clean(p.NetnsPath)
		}
		sy := p.Sysctl
		if sy.KeepaliveTime > 0 {
			sec.Text = append(sec.Text, fmt.Sprintf("%s: sockets that turn keepalive on without their own timings probe after %s idle, every %s, %d times (net.ipv4.tcp_keepalive_*).",
				p.Netns, Seconds(sy.KeepaliveTime), Seconds(sy.KeepaliveIntvl), sy.KeepaliveProbes))
		}
		g := &Grid{Header: []string{"fd", "state", "local", "remote", "keepalive", "idle / interval / count", "dead peer noticed after", "verdict", "reason"}}
		for _, sk := range p.Sockets {
			k := sk.Keepalive
			ka, timing, dead := "off", "-", "never"
			if k.Enabled {
				ka = "on"
				timing = Seconds(k.IdleS) + " / " + Seconds(k.IntervalS) + " / " + strconv.Itoa(k.Count)
				dead = Seconds(sk.DeadPeerS)
			}
			if sk.Protocol == "mptcp" {
				ka += " (mptcp)"
			}
			switch k.Source {
			case inspect.Inferred:
				ka += " (inferred)"
				if k.Enabled && k.IdleLowerBound {
					timing = "at least " + timing
				}
			case inspect.Unknown:
				ka, timing, dead = "?", "?", "?"
			}
			fd := strconv.Itoa(sk.FD)
			if sk.FD < 0 {
				fd = "-"
			}
			g.Rows = append(g.Rows, []Cell{{Text: fd}, {Text: sk.State}, {Text: sk.Local}, {Text: sk.Remote},
				{Text: ka}, {Text: timing}, {Text: dead}, {Text: string(sk.Verdict), Tone: socketTone(sk.Verdict)}, {Text: sk.Reason}})
			if sk.Verdict == inspect.OK || sk.Verdict == inspect.AtRisk {
				timelines = append(timelines, socketTimeline(p, sk, s.MaxIdleS))
			}
		}
		if len(g.Rows) == 0 {
			sec.Text = append(sec.Text, "No TCP sockets.")
		} else {
			sec.Grid = g
		}
		d.Sections = append(d.Sections, sec)
	}
	if len(timelines) > maxSocketTimelines {
		timelines = timelines[:maxSocketTimelines]
	}
	if len(timelines) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "What happens when each connection goes idle",
			Text:      []string{"From the last packet on: the keepalive probes the socket's settings send, against the moment the middlebox forgets a silent flow."},
			Timelines: timelines})
	}
	if len(s.Notes) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Notes", List: s.Notes})
	}
	return d
}

func socketTone(v inspect.Verdict) Tone {
	switch v {
	case inspect.OK:
		return Good
	case inspect.AtRisk, inspect.Dead:
		return Bad
	case inspect.Undetermined:
		return Warn
	}
	return Plain
}

// socketTimeline is the socket's keepalive schedule from the moment it goes
// idle: derived from its own settings, not observed (that is capture's job).
func socketTimeline(p inspect.Process, sk inspect.Socket, maxIdleS int) Timeline {
	k := sk.Keepalive
	t := Timeline{Title: fmt.Sprintf("pid %d fd %d %s -> %s", p.PID, sk.FD, sk.Local, sk.Remote), LimitS: float64(maxIdleS)}
	if p.PID == 0 {
		t.Title = fmt.Sprintf("%s -> %s", sk.Local, sk.Remote)
	}
	end := float64(maxIdleS) * 1.25
	if k.Enabled && k.IdleS > 0 {
		end = max(end, float64(k.IdleS)*1.1)
		// An answered probe restarts the idle clock: the next one is due a
		// whole idle period later (the interval only spaces unanswered ones).
		for at, n := float64(k.IdleS), 0; at <= end && n < 50; at, n = at+float64(k.IdleS), n+1 {
			t.Events = append(t.Events, Event{T: at, Kind: EventProbe, Label: "keepalive probe due (if the last one was answered)"})
		}
	}
	t.EndS = end
	if sk.Verdict == inspect.OK {
		t.Tone, t.Outcome = Good, fmt.Sprintf("first probe after %s idle, before the middlebox forgets the flow at %s", Seconds(k.IdleS), Seconds(maxIdleS))
	} else {
		t.Tone = Bad
		t.Outcome = sk.Reason
		t.Events = append(t.Events, Event{T: float64(maxIdleS), Kind: EventExpiry,
			Label: "middlebox forgets the flow after " + HumanDuration(time.Duration(maxIdleS)*time.Second) + " of silence"})
	}
	return t
}
