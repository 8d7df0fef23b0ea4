package reports

import (
	"fmt"
	"io"
	"strings"

	"github.com/kadiag/kadiag/simulate"
)

// Simulate renders a `kadiag simulate` run. Its JSON is simulate.Result's
// own (the embedded struct's fields, schema kadiag.simulate/v1).
type Simulate struct {
	*simulate.Result
}

// WriteTable writes the scenarios side by side, then one sentence each.
func (s Simulate) WriteTable(w io.Writer) error {
	r := s.Result
	if len(r.Hops) > 1 {
		fmt.Fprintf(w, "middleboxes: %s (%s)\n", chainLine(r), r.Family)
	} else {
		mb := fmt.Sprintf("idle %s", Seconds(int(r.IdleS)))
		if r.Preset != "" {
			mb = r.Preset + ", " + mb
		}
		if r.Scale > 1 {
			mb += fmt.Sprintf(", scaled ÷%g to %s in the lab", r.Scale, Seconds(int(r.LabIdleS)))
		}
		fmt.Fprintf(w, "middlebox: %s; after expiry: %s (%s)\n", mb, r.After, r.Family)
	}
	if len(r.Server) > 0 {
		fmt.Fprintf(w, "server: %s\n", strings.Join(r.Server, " "))
	}
	var line []string
	if len(r.Server) == 0 {
		line = append(line, fmt.Sprintf("server answers after %.1fs", r.ResponseDelayS))
	}
	if len(r.Command) == 0 {
		line = append(line, fmt.Sprintf("keepalive idle %s, interval %s, %d probes (preload, sysctl, app); too slow: idle %s",
			Seconds(int(r.KeepIdleS)), Seconds(int(r.KeepIntvlS)), r.KeepCnt, Seconds(int(r.SlowKeepIdleS))))
	}
	if len(line) > 0 {
		fmt.Fprintln(w, strings.Join(line, "; "))
	}
	fmt.Fprintln(w)
	tw := NewTable(w)
	fmt.Fprintln(tw, "SCENARIO\tEXPECTED\tOUTCOME\tELAPSED\tPROBES\tRSTS\tFORGOTTEN AT\tRESULT")
	for _, sc := range r.Scenarios {
		exp := "-"
		if sc.ExpiredS != nil {
			exp = fmt.Sprintf("%.1fs", *sc.ExpiredS)
		}
		verdict := "as expected"
		if !sc.Passed {
			verdict = "UNEXPECTED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%d\t%d\t%s\t%s\n", sc.Name, sc.Expected, sc.Outcome, sc.ElapsedS, sc.Probes, sc.Resets, exp, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, sc := range r.Scenarios {
		fmt.Fprintf(w, "%s: %s\n", sc.Name, s.evidence(sc))
		if len(sc.Hops) > 1 {
			fmt.Fprintf(w, "  %s\n", hopLine(sc))
		}
		for _, n := range sc.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	if r.Pcap != "" {
		fmt.Fprintf(w, "packets of the client links: %s\n", r.Pcap)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	_, err := fmt.Fprintf(w, "%d/%d scenarios as expected\n", r.Summary.Passed, r.Summary.Scenarios)
	return err
}

// JUnit makes every scenario a test case that fails when its outcome was
// not the expected one; the evidence and conntrack timeline go to its output.
func (s Simulate) JUnit() Suites {
	r := s.Result
	suite := Suite{Name: "kadiag simulate", Props: []Property{
		{Name: "idle_s", Value: fmt.Sprint(r.IdleS)},
		{Name: "after", Value: r.After},
		{Name: "scale", Value: fmt.Sprint(r.Scale)},
	}}
	if r.Preset != "" {
		suite.Props = append(suite.Props, Property{Name: "preset", Value: r.Preset})
	}
	for _, sc := range r.Scenarios {
		var out strings.Builder
		fmt.Fprintln(&out, s.evidence(sc))
		if len(sc.Hops) > 1 {
			fmt.Fprintln(&out, hopLine(sc))
		}
		for _, n := range sc.Notes {
			fmt.Fprintf(&out, "note: %s\n", n)
		}
		if sc.Client != "" {
			fmt.Fprintf(&out, "client: %s\n", sc.Client)
		}
		if sc.Socket != "" {
			fmt.Fprintf(&out, "%s\n", sc.Socket)
		}
		if len(sc.Hops) > 1 {
			for i, h := range sc.Hops {
				for _, e := range h.Conntrack {
					fmt.Fprintf(&out, "hop %d conntrack %7.3fs %-7s %-11s %s\n", i+1, e.T, e.Event, e.State, e.Flow)
				}
			}
		} else {
			for _, e := range sc.Conntrack {
				fmt.Fprintf(&out, "conntrack %7.3fs %-7s %-11s %s\n", e.T, e.Event, e.State, e.Flow)
			}
		}
		c := Case{Name: sc.Name, Classname: "simulate." + r.After, Time: sc.ElapsedS, SystemOut: out.String()}
		if !sc.Passed {
			c.Failure = &Failure{Message: fmt.Sprintf("expected %s, got %s", sc.Expected, sc.Outcome), Type: "unexpected-outcome", Text: s.evidence(sc)}
		}
		suite.Time += sc.ElapsedS
		suite.Cases = append(suite.Cases, c)
	}
	var all Suites
	all.Name = "kadiag"
	all.Add(suite)
	return all
}

// chainLine names a chain's hops in order, with their idle timeouts (a hop
// written as settings is its own description).
func chainLine(r *simulate.Result) string {
	var parts []string
	for i, h := range r.Hops {
		p := fmt.Sprintf("%d %s", i+1, h.Name)
		if !strings.Contains(h.Name, "=") {
			p += " idle " + Seconds(int(h.IdleS))
		}
		if r.Scale > 1 {
			p += fmt.Sprintf(" ÷%g = %s", r.Scale, Seconds(int(h.LabIdleS)))
		}
		nat := "NAT"
		if !h.NAT {
			nat = "no NAT"
		}
		if strings.Contains(h.Name, "=") {
			p += " (" + nat + ")"
		} else {
			p += fmt.Sprintf(" (%s, %s)", h.After, nat)
		}
		parts = append(parts, p)
	}
	line := strings.Join(parts, " → ")
	if r.Chain != "" {
		line = r.Chain + ": " + line
	}
	return "client → " + line + " → server"
}
