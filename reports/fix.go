package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kadiag/kadiag/fix"
)

// Fix renders `kadiag fix`. Its JSON is the kadiag.fix/v1 contract of
// fix.Report, unchanged.
type Fix struct {
	*fix.Report
}

// WriteTable prints one line per socket with every option as
// before → after, or one line per cgroup policy, then notes and a summary.
func (f Fix) WriteTable(out io.Writer) error {
	// tabwriter writes cell by cell: unbuffered, 10,000 sockets would be
	// hundreds of thousands of write calls.
	w := bufio.NewWriterSize(out, 64<<10)
	if err := f.writeTable(w); err != nil {
		return err
	}
	return w.Flush()
}

func (f Fix) writeTable(w io.Writer) error {
	r := f.Report
	if r.Mode == "pid" {
		if err := f.socketTable(w); err != nil {
			return err
		}
	} else if err := f.policyTable(w); err != nil {
		return err
	}
	for _, n := range r.Notes {
		if _, err := fmt.Fprintf(w, "note: %s\n", n); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, f.summary())
	return err
}

func (f Fix) socketTable(w io.Writer) error {
	r := f.Report
	t := NewTable(w)
	head := "FD\tPROTO\tSTATE\tLOCAL\tREMOTE\tACTION\tKEEPALIVE\tIDLE\tINTVL\tCNT\tUSER TIMEOUT"
	if r.WatchS > 0 {
		head += "\tWATCH"
	}
	fmt.Fprintln(t, head+"\tREASON")
	for _, s := range r.Sockets {
		b, a := s.Before, s.After
		if s.Action == fix.WouldChange {
			a = planned(s, r)
		}
		ka := arrow(onOff(b.Keepalive), onOff(a.Keepalive))
		idle := arrow(Seconds(b.IdleS), Seconds(a.IdleS))
		intvl := arrow(Seconds(b.IntervalS), Seconds(a.IntervalS))
		cnt := arrow(strconv.Itoa(b.Count), strconv.Itoa(a.Count))
		ut := arrow(millis(b.UserTimeoutMs), millis(a.UserTimeoutMs))
		if s.Action == fix.Gone {
			ka, idle, intvl, cnt, ut = "-", "-", "-", "-", "-"
		}
		reason := s.Reason
		if s.Error != "" {
			reason = s.Error
		}
		if reason == "" {
			reason = "-"
		}
		line := fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", s.FD, dash(s.Protocol), dash(s.State), dash(s.Local), dash(s.Remote),
			s.Action, ka, idle, intvl, cnt, ut)
		if r.WatchS > 0 {
			line += "\t" + watchText(s.Watch)
		}
		fmt.Fprintln(t, line+"\t"+reason)
	}
	return t.Flush()
}

// planned is what a dry run would leave on the socket.
func planned(s fix.Socket, r *fix.Report) fix.Options {
	a := s.Before
	for _, name := range s.Plan {
		switch name {
		case "SO_KEEPALIVE":
			a.Keepalive = true
		case "TCP_KEEPIDLE":
			a.IdleS = r.Settings.KeepidleS
		case "TCP_KEEPINTVL":
			a.IntervalS = r.Settings.KeepintvlS
		case "TCP_KEEPCNT":
			a.Count = r.Settings.Keepcnt
		case "TCP_USER_TIMEOUT":
			a.UserTimeoutMs = r.Settings.UserTimeoutMs
		}
	}
	return a
}

func arrow(before, after string) string {
	if before == after {
		return after
	}
	return before + " → " + after
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func millis(ms int) string {
	if ms == 0 {
		return "-"
	}
	return HumanDuration(time.Duration(ms) * time.Millisecond)
}

func watchText(w *fix.Watch) string {
	if w == nil {
		return "-"
	}
	switch w.Outcome {
	case fix.Alive:
		return "alive"
	case fix.Forgotten:
		return fmt.Sprintf("forgotten (%s at %s)", w.Closed, HumanDuration(time.Duration(w.AtS*float64(time.Second))))
	case fix.Unanswered:
		return fmt.Sprintf("unanswered (%d probes)", w.Unanswered)
	}
	return string(w.Outcome)
}

func (f Fix) policyTable(w io.Writer) error {
	r := f.Report
	if len(r.Policies) == 0 {
		return nil // the summary says none
	}
	t := NewTable(w)
	fmt.Fprintln(t, "CGROUP\tKEEPIDLE\tKEEPINTVL\tKEEPCNT\tUSER TIMEOUT\tLIFETIME")
	for _, p := range r.Policies {
		life := "pinned " + p.Pinned
		switch {
		case r.DryRun:
			life = "-"
		case p.Pinned == "" && r.Mode == "list":
			life = fmt.Sprintf("held by kadiag pid %d", p.HolderPID)
		case p.Pinned == "":
			life = "held by this kadiag"
		}
		fmt.Fprintf(t, "cgroup %s\t%s\t%s\t%d\t%s\t%s\n", p.Cgroup, Seconds(p.Settings.KeepidleS), Seconds(p.Settings.KeepintvlS),
			p.Settings.Keepcnt, millis(p.Settings.UserTimeoutMs), life)
	}
	return t.Flush()
}

func (f Fix) summary() string {
	r := f.Report
	switch r.Mode {
	case "cgroup":
		verb := "attached"
		if r.DryRun {
			verb = "would attach (dry run)"
		} else if len(r.Policies) > 0 && r.Policies[0].Replaced {
			verb = "attached, replacing the earlier kadiag policy"
		}
		return fmt.Sprintf("%s: sock_ops and cgroup/setsockopt programs; new connections of the cgroup and its descendants get keepalive", verb)
	case "remove":
		return "removed: new connections of the cgroup are no longer touched"
	case "list":
		held := 0
		for _, p := range r.Policies {
			if p.Pinned == "" {
				held++
			}
		}
		return fmt.Sprintf("kadiag policies: %d pinned, %d held", len(r.Policies)-held, held)
	}
	s := r.Summary
	var b strings.Builder
	if p := r.Process; p != nil {
		fmt.Fprintf(&b, "pid %d %s (%s) via %s: ", p.PID, p.Comm, p.Netns, r.Via)
	}
	fmt.Fprintf(&b, "%d sockets: ", s.Sockets)
	if r.DryRun {
		fmt.Fprintf(&b, "%d would change, ", s.WouldChange)
	} else {
		fmt.Fprintf(&b, "%d changed, ", s.Changed)
	}
	fmt.Fprintf(&b, "%d unchanged, %d skipped, %d failed", s.Unchanged, s.Skipped, s.Failed)
	if s.Gone > 0 {
		fmt.Fprintf(&b, ", %d gone", s.Gone)
	}
	if r.DryRun {
		b.WriteString(" (dry run: nothing written)")
	}
	if r.WatchS > 0 {
		fmt.Fprintf(&b, "; watched %s: %d alive, %d forgotten, %d unanswered", HumanDuration(time.Duration(r.WatchS*float64(time.Second))),
			s.Alive, s.Forgotten, s.Unanswered)
	}
	return b.String()
}

// WriteJSON writes the kadiag.fix/v1 document with one socket per line: a
// process may hold 100,000 sockets, and an indenting encoder costs more than
// the fix itself. The header comes from encoding/json, so every field keeps
// its tag.
func (f Fix) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	head := *f.Report
	head.Sockets = nil
	hb, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return err
	}
	const key = `"sockets": null`
	before, after, ok := bytes.Cut(hb, []byte(key))
	if !ok {
		return fmt.Errorf("fix json: %s missing", key)
	}
	bw.Write(before)
	bw.WriteString(`"sockets": [`)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range f.Sockets {
		buf.Reset()
		if err := enc.Encode(&f.Sockets[i]); err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		bw.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	if len(f.Sockets) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]")
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// JUnit: one case per socket; a socket that could not be fixed fails.
func (f Fix) JUnit() Suites {
	r := f.Report
	suite := Suite{Name: "kadiag fix " + r.Mode}
	for _, s := range r.Sockets {
		c := Case{Name: fmt.Sprintf("fd %d %s -> %s", s.FD, s.Local, s.Remote), Classname: "kadiag.fix"}
		switch s.Action {
		case fix.Failed:
			c.Failure = &Failure{Message: s.Error, Type: string(s.Action)}
		case fix.Skipped, fix.Gone:
			c.Skipped = &Skipped{Message: s.Reason}
		default:
			c.SystemOut = string(s.Action)
		}
		suite.Cases = append(suite.Cases, c)
	}
	for _, p := range r.Policies {
		suite.Cases = append(suite.Cases, Case{Name: "cgroup " + p.Cgroup, Classname: "kadiag.fix.cgroup", SystemOut: r.Mode})
	}
	var out Suites
	out.Add(suite)
	return out
}
