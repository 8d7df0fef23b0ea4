package reports

import (
	"fmt"
	"github.com/kadiag/kadiag/internal/label"
	"strconv"
)

// Document lays out preload check: the verdict, the program and library
// found, why it is (not) effective and what to do, then every socket.
func (r PreloadCheck) Document() Document {
	c := r.CheckResult
	d := Document{Title: fmt.Sprintf("kadiag preload check: pid %d (%s)", c.PID, label.Clean(c.Comm)), Status: StatusOK,
		Summary: "The keepalive library is loaded and every TCP socket carries its settings."}
	if !c.Effective {
		d.Status = StatusFailed
		d.Summary = "The keepalive library is not effective in this process."
	}
	kind := "dynamically linked, " + string(c.Binary.Libc)
	switch {
	case c.Binary.GoVersion != "":
		kind = "Go " + c.Binary.GoVersion
	case c.Binary.Static:
		kind = "static"
	}
	lib := "not mapped"
	if c.Library.Mapped {
		lib = "mapped from " + c.Library.Path
	}
	facts := []string{
		"program: " + c.Binary.Path + " (" + kind + ")",
		"library: " + lib + "; LD_PRELOAD=" + strconv.Quote(c.Library.Preload),
	}
	if c.Config.Off {
		facts = append(facts, "settings: KADIAG_KEEPALIVE=off (the library is inert)")
	} else {
		facts = append(facts, fmt.Sprintf("settings: idle %s, interval %s, count %s, user timeout %s, enforce %v",
			setting(c.Config.Idle), setting(c.Config.Interval), count(c.Config.Count), setting(c.Config.UserTimeout), !c.Config.NoEnforce))
	}
	d.Sections = append(d.Sections, Section{Heading: "Process", List: facts})
	if len(c.Reasons) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Why not", List: c.Reasons})
	}
	if len(c.Advice) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "What to do", List: c.Advice})
	}
	if len(c.Notes) > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Notes", List: c.Notes})
	}
	if len(c.Sockets) > 0 {
		g := &Grid{Header: []string{"fd", "state", "local", "remote", "keepalive", "idle", "interval", "count", "user timeout", "ok"}}
		for _, s := range c.Sockets {
			ka := "off"
			if s.Keepalive {
				ka = "on"
			}
			ok, tone := "ok", Good
			if !s.OK {
				ok, tone = "NO: "+s.Problem, Bad
			}
			g.Rows = append(g.Rows, []Cell{{Text: strconv.Itoa(s.FD)}, {Text: s.State}, {Text: s.Local}, {Text: dash(s.Remote)},
				{Text: ka}, {Text: HumanDuration(s.Idle)}, {Text: HumanDuration(s.Interval)}, {Text: strconv.Itoa(s.Count)},
				{Text: HumanDuration(s.UserTimeout)}, {Text: ok, Tone: tone}})
		}
		d.Sections = append(d.Sections, Section{Heading: "Sockets", Grid: g})
	}
	return d
}
