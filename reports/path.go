package reports

import (
	"fmt"
	"io"
	"time"

	"github.com/kadiag/kadiag/path"
)

// Path renders a `kadiag path` measurement. Its JSON is path.Result's own
// (schema kadiag.path/v1).
type Path struct {
	*path.Result
}

// pathDir is one measured direction with its name.
type pathDir struct {
	Name string
	R    *path.DirectionResult
}

// pathDirs are the directions of a result, in table order.
func pathDirs(r *path.Result) []pathDir {
	var out []pathDir
	for _, d := range []pathDir{{string(path.ToClient), r.Directions.ToClient}, {string(path.ToServer), r.Directions.ToServer}} {
		if d.R != nil {
			out = append(out, d)
		}
	}
	return out
}

func optS(v *float64) string {
	if v == nil {
		return "-"
	}
	return secs(*v)
}

// pathAfter names a direction's after-expiry behaviour with who saw an RST.
func pathAfter(d *path.DirectionResult) string {
	if d.AfterExpiry == path.AfterReset && d.ResetBy != "" {
		return "reset (" + d.ResetBy + ")"
	}
	return d.AfterExpiry
}

// WriteTable writes one row per direction, then the findings in words.
func (p Path) WriteTable(w io.Writer) error {
	r := p.Result
	kind := "counterpart"
	if !r.Counterpart {
		kind = "plain server, no counterpart"
	}
	fmt.Fprintf(w, "target %s (%s); idle %s to %s at ±%g%%; rtt %.1fms, silent after %s\n\n", r.Target, kind,
		secs(r.MinS), secs(r.MaxS), r.Precision*100, r.RTTMS, secs(r.DeadlineS))
	tw := NewTable(w)
	fmt.Fprintln(tw, "DIRECTION\tIDLE TIMEOUT\tSURVIVED\tLOST AT\tAFTER EXPIRY\tTESTS")
	for _, d := range pathDirs(r) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", d.Name, optS(d.R.IdleTimeoutS), optS(d.R.BracketS[0]), optS(d.R.BracketS[1]), pathAfter(d.R), len(d.R.Tests))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, s := range r.Summary {
		fmt.Fprintln(w, s)
	}
	if r.PathFailed != "" {
		fmt.Fprintln(w, r.PathFailed)
	}
	if r.ExpectAtLeastS != nil {
		fmt.Fprintln(w, p.expectLine())
	}
	_, err := fmt.Fprintf(w, "%s in %s with %d connections\n", map[bool]string{true: "measured", false: "stopped"}[r.Complete], secs(r.ElapsedS), r.Connections)
	return err
}

// expectLine says how --expect-at-least went.
func (p Path) expectLine() string {
	e := *p.ExpectAtLeastS
	passed, known := p.ExpectPassed(time.Duration(e * float64(time.Second)))
	switch {
	case !known:
		return fmt.Sprintf("expect at least %s: not known yet (at least %s so far)", secs(e), secs(p.AtLeast()))
	case passed:
		return fmt.Sprintf("expect at least %s: ok", secs(e))
	}
	if short, ok := p.Shortest(); ok && short.Seconds() < e {
		return fmt.Sprintf("expect at least %s: FAILED, the path forgets idle flows after %s", secs(e), secs(short.Seconds()))
	}
	if c := p.ServerIdleCloseS; c != nil && *c < e {
		return fmt.Sprintf("expect at least %s: FAILED, the server closes idle connections after %s", secs(e), secs(*c))
	}
	return fmt.Sprintf("expect at least %s: FAILED", secs(e))
}

// Passed reports whether --expect-at-least (when given) holds and the
// --keepalive check (when asked) kept the flow alive.
func (p Path) Passed() bool {
	r := p.Result
	if r.ExpectAtLeastS != nil {
		if ok, known := r.ExpectPassed(time.Duration(*r.ExpectAtLeastS * float64(time.Second))); !ok || !known {
			return false
		}
	}
	if r.Keepalive != nil && !r.Keepalive.KeptAlive {
		return false
	}
	return r.PathFailed == ""
}

// JUnit makes each direction a test case (failed under --expect-at-least
// when the path forgets sooner), and the keepalive check one more.
func (p Path) JUnit() Suites {
	r := p.Result
	suite := Suite{Name: "kadiag path", Time: r.ElapsedS, Props: []Property{
		{Name: "target", Value: r.Target},
		{Name: "counterpart", Value: fmt.Sprint(r.Counterpart)},
	}}
	for _, d := range pathDirs(r) {
		c := Case{Name: d.Name + " idle timeout", Classname: "path." + d.Name, Time: r.ElapsedS,
			SystemOut: fmt.Sprintf("idle timeout %s, survived %s, lost at %s, after expiry %s\n", optS(d.R.IdleTimeoutS), optS(d.R.BracketS[0]), optS(d.R.BracketS[1]), pathAfter(d.R))}
		if r.ExpectAtLeastS != nil && d.R.IdleTimeoutS != nil && *d.R.IdleTimeoutS < *r.ExpectAtLeastS {
			c.Failure = &Failure{Message: fmt.Sprintf("%s forgets idle flows after %s, expected at least %s", d.Name, secs(*d.R.IdleTimeoutS), secs(*r.ExpectAtLeastS)), Type: "expect-at-least"}
		}
		suite.Cases = append(suite.Cases, c)
	}
	if r.ExpectAtLeastS != nil && r.ServerIdleCloseS != nil && *r.ServerIdleCloseS < *r.ExpectAtLeastS {
		suite.Cases = append(suite.Cases, Case{Name: "server idle close", Classname: "path.server", Time: r.ElapsedS,
			Failure: &Failure{Message: fmt.Sprintf("the server closes idle connections after %s, expected at least %s", secs(*r.ServerIdleCloseS), secs(*r.ExpectAtLeastS)), Type: "expect-at-least"}})
	}
	if k := r.Keepalive; k != nil {
		c := Case{Name: fmt.Sprintf("keepalive every %s", secs(k.IntervalS)), Classname: "path.keepalive", Time: r.ElapsedS}
		if !k.KeptAlive {
			c.Failure = &Failure{Message: fmt.Sprintf("keepalive probes every %s did not keep the flow alive past the timeout", secs(k.IntervalS)), Type: "keepalive"}
		}
		suite.Cases = append(suite.Cases, c)
	}
	if r.PathFailed != "" {
		suite.Cases = append(suite.Cases, Case{Name: "path", Classname: "path", Error: &Failure{Message: r.PathFailed, Type: "path-failed"}})
	}
	var all Suites
	all.Name = "kadiag"
	all.Add(suite)
	return all
}

// Document lays the measurement out, with one chart per direction of the
// tests' outcomes against their idle: green where the flow survived, red
// where it was lost.
func (p Path) Document() Document {
	r := p.Result
	d := Document{Title: "kadiag path", Status: StatusInfo}
	if r.ExpectAtLeastS != nil || r.Keepalive != nil {
		d.Status = StatusOK
		if !p.Passed() {
			d.Status = StatusFailed
		}
	}
	kind := "a kadiag counterpart"
	if !r.Counterpart {
		kind = "a plain server (no counterpart)"
	}
	d.Summary = fmt.Sprintf("The path to %s (%s), idles from %s to %s at ±%g%%, measured in %s with %d connections.",
		r.Target, kind, secs(r.MinS), secs(r.MaxS), r.Precision*100, secs(r.ElapsedS), r.Connections)
	g := &Grid{Header: []string{"direction", "idle timeout", "survived", "lost at", "after expiry", "tests"}}
	var tls []Timeline
	for _, x := range pathDirs(r) {
		tone := Good
		if x.R.IdleTimeoutS != nil {
			tone = Warn
		}
		g.Rows = append(g.Rows, []Cell{{Text: x.Name}, {Text: optS(x.R.IdleTimeoutS), Tone: tone}, {Text: optS(x.R.BracketS[0])},
			{Text: optS(x.R.BracketS[1])}, {Text: pathAfter(x.R)}, {Text: fmt.Sprint(len(x.R.Tests))}})
		tls = append(tls, survivalTimeline(x.Name, x.R))
	}
	d.Sections = append(d.Sections, Section{Heading: "Idle timeout per direction", Grid: g})
	text := append([]string{}, r.Summary...)
	if r.ExpectAtLeastS != nil {
		text = append(text, p.expectLine())
	}
	if r.PathFailed != "" {
		text = append(text, r.PathFailed)
	}
	d.Sections = append(d.Sections, Section{Heading: "Findings", List: text})
	d.Sections = append(d.Sections, Section{Heading: "Survival against idle time",
		Text:      []string{"Each mark is one connection's test at the idle it had (seconds): a green triangle survived, a red X was reset, a grey line was lost silently; the dashed line is the measured timeout."},
		Timelines: tls})
	return d
}

// survivalTimeline draws a direction's tests along the idle axis.
func survivalTimeline(name string, d *path.DirectionResult) Timeline {
	t := Timeline{Title: name, Tone: Good, Outcome: "no expiry seen"}
	if d.AfterExpiry == path.AfterHeal {
		t.Outcome = "survived past the other direction's expiry (heal)"
	}
	if d.IdleTimeoutS != nil {
		t.LimitS, t.Tone = *d.IdleTimeoutS, Warn
		t.Outcome = fmt.Sprintf("forgotten after %s; after expiry: %s", secs(*d.IdleTimeoutS), pathAfter(d))
		t.Events = append(t.Events, Event{T: *d.IdleTimeoutS, Kind: EventExpiry, Label: "measured idle timeout " + secs(*d.IdleTimeoutS)})
	}
	for _, x := range d.Tests {
		e := Event{T: x.IdleS}
		switch x.Outcome {
		case path.Delivered:
			// An unlabelled mark: dozens of survivals would bury the labels.
			e.Kind, e.Label = EventProbeAck, "survived "+secs(x.IdleS)
		case path.Reset:
			e.Kind, e.Label = EventRST, "reset after "+secs(x.IdleS)
		case path.Silent:
			e.Kind, e.Label = EventTimeout, "lost silently after "+secs(x.IdleS)
		default:
			e.Kind, e.Label = EventNote, x.Outcome+" after "+secs(x.IdleS)
		}
		t.Events = append(t.Events, e)
		t.EndS = max(t.EndS, x.IdleS)
	}
	t.EndS *= 1.05
	return t
}

// PathServeLine is the counterpart's log line for one measurement.
func PathServeLine(m path.Measurement) string {
	ts := m.Started.UTC().Format(time.RFC3339)
	if m.Refused != "" {
		return fmt.Sprintf("%s %s: refused: %s", ts, m.Client, m.Refused)
	}
	return fmt.Sprintf("%s %s: measurement of %s: %d connections, %d to-client sends, %d to-server answers, %d RSTs seen",
		ts, m.Client, secs(m.Duration.Seconds()), m.Connections, m.Sent, m.Answered, m.Resets)
}
