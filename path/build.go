package path

import (
	"fmt"
	"sort"
	"time"
)

// result builds the Result from what is known now.
func (r *run) result(complete bool) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		Schema: Schema, Target: r.cfg.Target, Counterpart: r.counterpart,
		ElapsedS: secs(time.Since(r.start)), Connections: r.conns, Complete: complete,
		MinS: secs(r.cfg.Min), MaxS: secs(r.cfg.Max), Precision: r.cfg.Precision,
		RTTMS: float64(r.rtt.Microseconds()) / 1000, DeadlineS: secs(r.deadline),
	}
	var closes []time.Duration
	for _, ds := range r.dirs {
		dr := ds.result()
		for _, p := range ds.points {
			for _, t := range p.tests {
				if t.finished && t.outcome == Closed {
					closes = append(closes, t.measured)
				}
			}
		}
		switch ds.dir {
		case ToClient:
			res.Directions.ToClient = dr
		case ToServer:
			res.Directions.ToServer = dr
		}
	}
	if len(closes) > 0 {
		sort.Slice(closes, func(i, j int) bool { return closes[i] < closes[j] })
		res.ServerIdleCloseS = fptr(secs(closes[len(closes)/2]))
	}
	if r.cfg.Keepalive > 0 {
		k := &KeepaliveResult{IntervalS: secs(r.cfg.Keepalive), KeptAlive: r.kaFired}
		for _, t := range r.ka {
			if !t.finished {
				k.KeptAlive = false
				continue
			}
			k.Tests = append(k.Tests, t.record())
			k.KeptAlive = k.KeptAlive && t.outcome == Delivered
		}
		res.Keepalive = k
	}
	res.Summary = summarise(res)
	return res
}

func (t *test) record() Test {
	return Test{IdleS: secs(t.measured), Outcome: t.outcome, By: t.by, Late: t.late}
}

// result is the bracket of one direction from its finished tests: the
// longest idle that survived below the first point where all died, and the
// shortest idle measured at that point.
func (ds *dirState) result() *DirectionResult {
	dr := &DirectionResult{AfterExpiry: AfterNone, Bracketed: ds.decided && ds.upper >= 0}
	limit := len(ds.points)
	if ds.upper >= 0 {
		limit = ds.upper
	}
	lower := 0.0
	for i, p := range ds.points {
		for _, t := range p.tests {
			if !t.finished {
				continue
			}
			dr.Tests = append(dr.Tests, t.record())
			if i < limit && t.outcome == Delivered {
				lower = max(lower, secs(t.measured))
			}
		}
	}
	sort.SliceStable(dr.Tests, func(i, j int) bool { return dr.Tests[i].IdleS < dr.Tests[j].IdleS })
	dr.BracketS[0] = fptr(lower)
	switch {
	case ds.heal:
		dr.AfterExpiry = AfterHeal
	case ds.upper >= 0:
		upper := -1.0
		dr.AfterExpiry = AfterDrop
		for _, t := range ds.points[ds.upper].tests {
			if !t.finished {
				continue
			}
			if m := secs(t.measured); upper < 0 || m < upper {
				upper = m
			}
			if t.outcome == Reset && dr.AfterExpiry != AfterReset {
				dr.AfterExpiry, dr.ResetBy = AfterReset, t.by
			}
		}
		upper = max(upper, lower)
		dr.BracketS[1] = fptr(upper)
		dr.IdleTimeoutS = fptr(secs(time.Duration((lower + upper) / 2 * float64(time.Second))))
	}
	return dr
}

// summarise says in words what the path does.
func summarise(res *Result) []string {
	var out []string
	name := map[Direction]string{
		ToClient: "to-client (the far side sends after the idle, as a late reply does)",
		ToServer: "to-server (this side sends after the idle)",
	}
	for _, x := range []struct {
		d  Direction
		dr *DirectionResult
	}{{ToClient, res.Directions.ToClient}, {ToServer, res.Directions.ToServer}} {
		dr := x.dr
		if dr == nil {
			continue
		}
		lo := *dr.BracketS[0]
		switch {
		case dr.BracketS[1] != nil:
			s := fmt.Sprintf("%s: forgotten after %s idle (survived %s, lost at %s)", name[x.d], fmtS(*dr.IdleTimeoutS), fmtS(lo), fmtS(*dr.BracketS[1]))
			switch dr.AfterExpiry {
			case AfterReset:
				s += fmt.Sprintf("; after expiry an RST (seen by the %s)", dr.ResetBy)
			case AfterDrop:
				s += "; after expiry packets are dropped silently"
			}
			if lo == 0 {
				s += fmt.Sprintf("; shorter than --min %s: lower --min to bracket it", fmtS(res.MinS))
			}
			out = append(out, s)
		case dr.AfterExpiry == AfterHeal:
			out = append(out, fmt.Sprintf("%s: survived every idle tested, up to %s, past the other direction's expiry", name[x.d], fmtS(lo)))
		case res.ServerIdleCloseS != nil:
			out = append(out, fmt.Sprintf("%s: survived up to %s; longer idles cannot be measured against this server", name[x.d], fmtS(lo)))
		case dr.Bracketed || res.Complete:
			out = append(out, fmt.Sprintf("%s: no expiry up to --max %s", name[x.d], fmtS(res.MaxS)))
		default:
			out = append(out, fmt.Sprintf("%s: at least %s; not yet bracketed", name[x.d], fmtS(lo)))
		}
	}
	tc, ts := res.Directions.ToClient, res.Directions.ToServer
	if tc != nil && ts != nil {
		switch {
		case ts.AfterExpiry == AfterHeal && tc.BracketS[1] != nil:
			out = append(out, "asymmetry: the middlebox re-creates a forgotten flow from this side's packets (heal, as Linux conntrack's loose pickup does) but not from the far side's: a client that sends after an idle survives, a late reply from the server is lost")
		case tc.AfterExpiry == AfterHeal && ts.BracketS[1] != nil:
			out = append(out, "asymmetry: the flow survives in the to-client direction past the to-server expiry: the middlebox re-creates it only from the far side's packets")
		case ts.AfterExpiry == AfterReset && tc.AfterExpiry == AfterDrop:
			out = append(out, "asymmetry: after expiry this side's packets are answered with an RST, the far side's are dropped: the client learns of the loss only when it sends (as behind an AWS NAT Gateway)")
		}
	}
	if !res.Counterpart {
		out = append(out, "no counterpart on the far side: only to-server was measured (a keepalive probe at each idle); a late reply from the server (to-client), and whether the middlebox heals, need `kadiag path serve` there")
	}
	if res.ServerIdleCloseS != nil {
		out = append(out, fmt.Sprintf("the server itself closes connections idle for %s (FIN): a limit of its own, below which the client must stay too", fmtS(*res.ServerIdleCloseS)))
	}
	if k := res.Keepalive; k != nil {
		switch {
		case k.KeptAlive:
			out = append(out, fmt.Sprintf("keepalive probes every %s kept the flow alive past the timeout", fmtS(k.IntervalS)))
		case len(k.Tests) > 0:
			out = append(out, fmt.Sprintf("keepalive probes every %s did not keep the flow alive: probe more often than the timeout", fmtS(k.IntervalS)))
		}
	}
	if !res.Complete {
		s := fmt.Sprintf("interrupted after %s: at least %s", fmtS(res.ElapsedS), fmtS(res.AtLeast()))
		if _, ok := res.Shortest(); !ok {
			s += "; not yet bracketed"
		}
		out = append(out, s)
	}
	return out
}
