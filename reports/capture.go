package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/kadiag/kadiag/capture"
)

// Capture renders a capture.Result; its JSON is the result's own
// (kadiag.capture/v1).
type Capture struct {
	*capture.Result
}

func secs(s float64) string {
	// Timestamps in a hostile or broken capture can be centuries apart:
	// beyond what a Duration holds, where the conversion would wrap.
	if limit := float64(math.MaxInt64) / float64(time.Second); s > limit || s < -limit {
		return fmt.Sprintf("%.0fs", s)
	}
	return HumanDuration(time.Duration(s * float64(time.Second)).Round(time.Millisecond))
}

// WriteTable writes one line per flow and a summary.
func (c Capture) WriteTable(w io.Writer) error {
	r := c.Result
	t := NewTable(w)
	fmt.Fprintln(t, "CLIENT\tSERVER\tPACKETS\tPROBES\tFROM\tACKED\tUNANSWERED\tINTERVAL MIN/MED/MAX\tFIRST PROBE AFTER\tMAX GAP\tRSTS\tVERDICT\tREASON")
	for _, f := range r.Flows {
		interval, first := probeTiming(&f, "/")
		from := "-"
		switch {
		case f.ClientProbes > 0 && f.ServerProbes > 0:
			from = "both"
		case f.ClientProbes > 0:
			from = "client"
		case f.ServerProbes > 0:
			from = "server"
		}
		verdict := f.Verdict
		if f.Assertion == capture.AssertFail {
			verdict += ",assert-failed"
		}
		fmt.Fprintf(t, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", f.Client, f.Server, f.Packets,
			f.Probes, from, f.ProbeAcks, f.UnansweredProbes, interval, first, secs(f.MaxGapS), f.RSTs, verdict, f.Reason)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	s := r.Summary
	line := fmt.Sprintf("%d flows: %d ok, %d at risk (max idle %s)", s.Flows, s.OK, s.AtRisk, secs(r.MaxIdleS))
	if r.AssertProbesEveryS > 0 {
		line += fmt.Sprintf(", %d failed --assert-probes-every %s", s.AssertFailed, secs(r.AssertProbesEveryS))
	}
	line += fmt.Sprintf("; %d packets, %d TCP, %d keepalive probes", s.Packets, s.TCPPackets, s.Probes)
	if _, err := fmt.Fprintln(w, line); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	if r.ReadError != "" {
		fmt.Fprintln(w, "read error: "+r.ReadError)
	}
	return nil
}

// JUnit returns one test case per flow: a failure when the flow is at risk
// or failed --assert-probes-every.
func (c Capture) JUnit() Suites {
	r := c.Result
	suite := Suite{Name: "kadiag capture", Props: []Property{
		{Name: "max_idle_s", Value: strconv.FormatFloat(r.MaxIdleS, 'f', -1, 64)},
	}}
	if r.Source != "" {
		suite.Props = append(suite.Props, Property{Name: "source", Value: r.Source})
	}
	if !r.Start.IsZero() {
		suite.Timestamp = r.Start.Format(time.RFC3339)
		suite.Time = r.End.Sub(r.Start).Seconds()
	}
	for _, f := range r.Flows {
		tc := Case{
			Name:      f.Client + " -> " + f.Server,
			Classname: "capture.flow",
			Time:      f.End.Sub(f.Start).Seconds(),
			SystemOut: fmt.Sprintf("packets=%d probes=%d probe_acks=%d unanswered=%d max_gap_s=%g rsts=%d",
				f.Packets, f.Probes, f.ProbeAcks, f.UnansweredProbes, f.MaxGapS, f.RSTs),
		}
		if f.Verdict != capture.VerdictOK || f.Assertion == capture.AssertFail {
			tc.Failure = &Failure{Message: f.Reason, Type: f.Verdict}
		}
		suite.Cases = append(suite.Cases, tc)
	}
	var s Suites
	s.Name = "kadiag"
	s.Add(suite)
	if r.ReadError != "" {
		s.Add(Suite{Name: "kadiag capture input", Cases: []Case{{Name: "read", Classname: "capture.input",
			Error: &Failure{Message: r.ReadError, Type: "read-error"}}}})
	}
	return s
}

// Failed reports whether the capture's check failed: a flow at risk or one
// that failed --assert-probes-every.
func (c Capture) Failed() bool {
	return c.Summary.AtRisk > 0 || c.Summary.AssertFailed > 0
}

// WriteJSON writes the same document as Render's JSON, flow by flow, so a
// capture of many thousand flows is never held twice in memory as text.
func (c Capture) WriteJSON(w io.Writer) error {
	head := *c.Result
	head.Flows = nil
	b, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return err
	}
	const hole = `"flows": null`
	i := bytes.Index(b, []byte(hole))
	if i < 0 {
		return fmt.Errorf("capture JSON: no flows field")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(b[:i+len(`"flows": `)])
	if len(c.Flows) == 0 {
		bw.WriteString("[]")
	} else {
		bw.WriteString("[\n")
		for n, f := range c.Flows {
			fb, err := json.MarshalIndent(f, "    ", "  ")
			if err != nil {
				return err
			}
			bw.WriteString("    ")
			bw.Write(fb)
			if n < len(c.Flows)-1 {
				bw.WriteString(",")
			}
			bw.WriteString("\n")
		}
		bw.WriteString("  ]")
	}
	bw.Write(b[i+len(hole):])
	bw.WriteString("\n")
	return bw.Flush()
}

// probeTiming is a flow's probe interval (min, median and max joined by
// sep) and its idle time before the first probe, "-" where there is none.
func probeTiming(f *capture.Flow, sep string) (interval, first string) {
	interval, first = "-", "-"
	if f.ProbeIntervalS.Count > 0 {
		interval = secs(f.ProbeIntervalS.Min) + sep + secs(f.ProbeIntervalS.Median) + sep + secs(f.ProbeIntervalS.Max)
	}
	if f.Probes > 0 {
		first = secs(f.IdleBeforeProbeS)
	}
	return interval, first
}
