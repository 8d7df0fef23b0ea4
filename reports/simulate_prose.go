package reports

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/simulate"
)

// scenarioWho says, per built-in scenario, who the client was: the first
// half of its sentence. A new scenario adds its entry here.
var scenarioWho = map[string]func(r *simulate.Result) string{
	simulate.None: func(*simulate.Result) string { return "without keepalive" },
	simulate.Preload: func(r *simulate.Result) string {
		return fmt.Sprintf("with the library (idle %s)", dur(r.KeepIdleS))
	},
	simulate.Sysctl: func(r *simulate.Result) string {
		return fmt.Sprintf("tcp_keepalive_time=%d in the client netns but SO_KEEPALIVE off", int(r.KeepIdleS))
	},
	simulate.App: func(r *simulate.Result) string {
		return fmt.Sprintf("keepalive set by the application (idle %s)", dur(r.KeepIdleS))
	},
	simulate.PreloadTooSlow: func(r *simulate.Result) string {
		return fmt.Sprintf("with the library but idle %s, longer than the middlebox's %s", dur(r.SlowKeepIdleS), dur(r.LabIdleS))
	},
	simulate.FixLive: func(r *simulate.Result) string {
		return fmt.Sprintf("keepalive off, fixed live by kadiag fix --pid before the middlebox forgot it (idle %s)", dur(r.KeepIdleS))
	},
	simulate.FixLiveLate: func(r *simulate.Result) string {
		return "keepalive off, fixed live by kadiag fix --pid after the middlebox forgot it"
	},
	simulate.FixCgroup: func(r *simulate.Result) string {
		return fmt.Sprintf("keepalive off, in a cgroup with kadiag fix's BPF programs (idle %s)", dur(r.KeepIdleS))
	},
}

func dur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// MarshalJSON is the run's own JSON with every scenario's sentence filled in.
func (s Simulate) MarshalJSON() ([]byte, error) {
	r := *s.Result
	r.Scenarios = make([]simulate.ScenarioResult, len(s.Scenarios))
	for i, sc := range s.Scenarios {
		sc.Evidence = s.evidence(sc)
		r.Scenarios[i] = sc
	}
	return json.Marshal(&r)
}

// evidence is the scenario's one sentence: what happened and why. A result
// that carries its own sentence keeps it.
func (s Simulate) evidence(sc simulate.ScenarioResult) string {
	if sc.Evidence != "" {
		return sc.Evidence
	}
	r := s.Result
	var who string
	if f, ok := scenarioWho[sc.Name]; ok {
		who = f(r)
	} else if len(r.Command) > 0 {
		who = strings.ReplaceAll(strings.Join(r.Command, " "), "\n", `\n`)
		if rs := []rune(who); len(rs) > 60 {
			who = string(rs[:57]) + "..."
		}
		if r.Preload {
			who += fmt.Sprintf(" with the library (idle %s)", dur(r.KeepIdleS))
		}
	} else {
		who = sc.Name
	}
	el := fmt.Sprintf("%.1fs", sc.ElapsedS)
	var what string
	switch sc.Outcome {
	case simulate.OutcomeOK:
		if len(r.Command) > 0 {
			what = "exited 0 after " + el
		} else {
			what = "200 OK after " + el
		}
	case simulate.OutcomeTimeout:
		what = "no response after " + el
	case simulate.OutcomeReset:
		what = "reset after " + el
	case simulate.OutcomeFailed:
		what = fmt.Sprintf("exited %d after %s", sc.ExitCode, el)
	default:
		what = fmt.Sprintf("client error after %s (%s)", el, sc.Client)
	}
	what += fmt.Sprintf(", %d probe%s", sc.Probes, pluralS(sc.Probes))
	var why, at string
	if sc.ExpiredS != nil {
		at = fmt.Sprintf("%.1fs", *sc.ExpiredS)
		if r.Scale > 1 {
			// Say it in the user's time too: the lab's 10 s are AWS's 350 s.
			at += fmt.Sprintf(" (%s unscaled)", (time.Duration(*sc.ExpiredS*r.Scale) * time.Second).Round(time.Second))
		}
	}
	who2, after := "the middlebox", middlebox.AfterExpiry(r.After)
	if sc.ForgottenBy != nil && len(sc.Hops) > 1 {
		h := sc.Hops[*sc.ForgottenBy-1]
		who2, after = fmt.Sprintf("hop %d (%s)", *sc.ForgottenBy, h.Name), middlebox.AfterExpiry(h.After)
	}
	switch {
	case sc.ExpiredS != nil && sc.Outcome == simulate.OutcomeReset:
		why = fmt.Sprintf(" — %s forgot the flow at %s and answered the next packet with RST", who2, at)
		if after != middlebox.Reset {
			why = fmt.Sprintf(" — %s forgot the flow at %s, and a reset followed", who2, at)
		}
	case sc.ExpiredS != nil && after == middlebox.Heal && sc.Outcome == simulate.OutcomeOK:
		why = fmt.Sprintf(" — %s forgot the flow at %s, and a late packet re-created it (loose conntrack)", who2, at)
	case sc.ExpiredS != nil:
		why = fmt.Sprintf(" — %s forgot the flow at %s", who2, at)
	case sc.Outcome == simulate.OutcomeOK && sc.Probes > 0:
		why = " — the probes kept the flow alive"
	}
	return who + ": " + what + why
}

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// hopLine says, for a chain, what each hop did with a scenario's flow.
func hopLine(sc simulate.ScenarioResult) string {
	var parts []string
	for i, h := range sc.Hops {
		p := fmt.Sprintf("hop %d %s (idle %s, %s)", i+1, h.Name, dur(h.LabIdleS), h.After)
		if h.ForgotAtS != nil {
			p += fmt.Sprintf(" forgot at %.1fs", *h.ForgotAtS)
		} else {
			p += " kept it"
		}
		parts = append(parts, p)
	}
	first := "no hop forgot the flow"
	if sc.ForgottenBy != nil {
		first = fmt.Sprintf("first to forget: hop %d", *sc.ForgottenBy)
	}
	return strings.Join(parts, "; ") + " — " + first
}
