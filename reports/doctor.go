package reports

import (
	"fmt"
	"io"
	"strings"

	"github.com/kadiag/kadiag/doctor"
	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/label"
)

// Doctor renders `kadiag doctor`: one screen that says what is wrong and
// what to change. Its JSON is doctor.Result's own (kadiag.doctor/v1).
type Doctor struct {
	*doctor.Result
}

func (d Doctor) verdict() string {
	if d.Healthy {
		return "OK"
	}
	return "AT RISK"
}

func (d Doctor) preloadLine() string {
	p := d.Preload
	switch {
	case p.Effective:
		return "loaded and effective (" + p.Path + ")"
	case p.Mapped:
		return "loaded but NOT effective: " + strings.Join(p.Reasons, "; ")
	case p.Requested:
		return "in LD_PRELOAD but NOT loaded: " + strings.Join(p.Reasons, "; ")
	case !p.Possible:
		return "not loaded; LD_PRELOAD cannot work in this process"
	}
	return "not loaded"
}

func (d Doctor) sysctlLine() string {
	s := d.Sysctl
	if s.KeepaliveTime == 0 {
		return d.Netns + ": keepalive sysctls unreadable"
	}
	return fmt.Sprintf("%s: tcp_keepalive_time %s, tcp_keepalive_intvl %s, tcp_keepalive_probes %d",
		d.Netns, Seconds(s.KeepaliveTime), Seconds(s.KeepaliveIntvl), s.KeepaliveProbes)
}

func (d Doctor) socketsLine() string {
	s := d.Summary
	return fmt.Sprintf("%d connected: %d ok, %d at risk, %d local, %d unknown; %d listening (middlebox idle limit %s)",
		s.Sockets, s.OK, s.AtRisk, s.Local, s.Unknown, s.Listening, Seconds(d.MaxIdleS))
}

// WriteTable writes the diagnosis: verdict, facts, sockets at risk, fixes.
func (d Doctor) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d (%s): %s\n", d.PID, label.Clean(d.Comm), d.verdict())
	fmt.Fprintf(&b, "  runtime:   %s\n", d.Runtime.Describe())
	fmt.Fprintf(&b, "  program:   %s\n", d.Runtime.Exe)
	if d.Runtime.JavaHome != "" {
		fmt.Fprintf(&b, "  java home: %s\n", d.Runtime.JavaHome)
	}
	if g := d.Runtime.Go; g != nil && g.Path != "" {
		fmt.Fprintf(&b, "  go build:  %s", g.Path)
		if g.CGO != "" {
			fmt.Fprintf(&b, " (CGO_ENABLED=%s)", g.CGO)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  where:     %s\n", d.Container.Describe())
	fmt.Fprintf(&b, "  netns:     %s\n", d.sysctlLine())
	fmt.Fprintf(&b, "  preload:   %s\n", d.preloadLine())
	fmt.Fprintf(&b, "  sockets:   %s\n", d.socketsLine())
	for _, s := range d.Sockets {
		if s.Verdict == inspect.AtRisk {
			fmt.Fprintf(&b, "    fd %d %s -> %s: %s\n", s.FD, s.Local, s.Remote, s.Reason)
		}
	}
	for _, p := range d.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	for i, f := range d.Fixes {
		fmt.Fprintf(&b, "\nfix %d: %s\n", i+1, f.Title)
		if f.Why != "" {
			fmt.Fprintf(&b, "  why: %s\n", f.Why)
		}
		for _, line := range strings.Split(strings.TrimRight(f.Text, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(&b, "    %s\n", line)
			}
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JUnit has one case per check: sockets, preload; a failure carries the
// first fix as its text.
func (d Doctor) JUnit() Suites {
	name := fmt.Sprintf("pid %d %s", d.PID, label.Clean(d.Comm))
	fix := ""
	if len(d.Fixes) > 0 {
		fix = d.Fixes[0].Title + "\n" + d.Fixes[0].Text
	}
	sockets := Case{Name: name + ": no socket at risk", Classname: "doctor.sockets", SystemOut: d.socketsLine()}
	if d.Summary.AtRisk > 0 {
		sockets.Failure = &Failure{Message: d.Problems[0], Type: "at-risk", Text: fix}
	}
	pre := Case{Name: name + ": preload library", Classname: "doctor.preload", SystemOut: d.preloadLine()}
	if (d.Preload.Requested || d.Preload.Mapped) && !d.Preload.Effective {
		pre.Failure = &Failure{Message: d.preloadLine(), Type: "not-effective"}
	} else if !d.Preload.Requested && !d.Preload.Mapped {
		pre.Skipped = &Skipped{Message: "not configured"}
	}
	s := Suites{Name: "kadiag doctor"}
	s.Add(Suite{Name: "kadiag doctor " + name, Cases: []Case{sockets, pre}, Props: []Property{
		{Name: "runtime", Value: d.Runtime.Describe()}, {Name: "where", Value: d.Container.Describe()}}})
	return s
}

// Document lays the diagnosis out for Markdown and HTML.
func (d Doctor) Document() Document {
	doc := Document{Title: fmt.Sprintf("kadiag doctor: pid %d (%s)", d.PID, label.Clean(d.Comm)), Status: StatusOK,
		Summary: "No connection of this process can be forgotten by the middlebox."}
	if !d.Healthy {
		doc.Status = StatusFailed
		doc.Summary = strings.Join(d.Problems, ". ") + "."
	}
	facts := []string{"runtime: " + d.Runtime.Describe(), "program: " + d.Runtime.Exe, "where: " + d.Container.Describe(),
		"network namespace: " + d.sysctlLine(), "preload: " + d.preloadLine(), "sockets: " + d.socketsLine()}
	doc.Sections = append(doc.Sections, Section{Heading: "Diagnosis", List: facts})
	rep := Sockets{Report: &inspect.Report{MaxIdleS: d.MaxIdleS, Summary: d.Summary,
		Processes: []inspect.Process{{PID: d.PID, Comm: label.Clean(d.Comm), Netns: d.Netns, Sysctl: d.Sysctl, Sockets: d.Sockets}}}}
	for _, s := range rep.Document().Sections {
		if s.Grid != nil {
			s.Heading, s.Text = "Sockets", nil
			doc.Sections = append(doc.Sections, s)
		}
	}
	for i, f := range d.Fixes {
		sec := Section{Heading: fmt.Sprintf("Fix %d: %s", i+1, f.Title), Code: f.Text, CodeLang: f.Lang}
		if f.Why != "" {
			sec.Text = []string{f.Why}
		}
		doc.Sections = append(doc.Sections, sec)
	}
	if len(d.Notes) > 0 {
		doc.Sections = append(doc.Sections, Section{Heading: "Notes", List: d.Notes})
	}
	return doc
}
