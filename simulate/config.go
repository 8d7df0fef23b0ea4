package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kadiag/kadiag/middlebox"
)

// Config is one `kadiag simulate` run. Durations are real-world ones; Scale
// divides them for the lab.
type Config struct {
	// Idle is the middlebox's idle timeout (a one-hop lab).
	Idle time.Duration
	// After is what the middlebox does with a forgotten flow's packets.
	After middlebox.AfterExpiry
	// Preset names the middlebox the values came from, if any (for reports).
	Preset string
	// Hops, when set, is a chain of middleboxes, client side first, in
	// place of the one Idle and After describe; Chain names it (eks-nat),
	// if it has a name. Idle and After then report the hop with the
	// shortest idle timeout.
	Hops  []middlebox.Hop
	Chain string
	// Scale divides every duration kadiag controls (1: real time).
	Scale float64

	// ResponseDelay is how long the server works before answering;
	// zero with ResponseDelaySet false means Idle + 30 s.
	ResponseDelay    time.Duration
	ResponseDelaySet bool
	// ServerKeepalive, when positive, makes the server probe on its own.
	ServerKeepalive time.Duration

	// KeepIdle, KeepIntvl and KeepCnt are the keepalive settings of the
	// preload, sysctl and app scenarios and of --preload; zero picks
	// defaults below Idle.
	KeepIdle, KeepIntvl time.Duration
	KeepCnt             int

	// Timeout ends a client (or user command) that got no answer; wall
	// clock, not scaled. Zero: response delay plus a margin.
	Timeout time.Duration

	// Scenarios to run; empty runs all.
	Scenarios []string
	// IPv6 makes the client dial the server's IPv6 address.
	IPv6 bool
	// PcapPath, when set, receives the client links' packets as pcapng,
	// one interface per scenario.
	PcapPath string

	// Library is the LD_PRELOAD keepalive library for the preload scenarios
	// and for Preload runs of a user command.
	Library []byte

	// Command, when set, runs instead of the scenarios, in the client
	// namespace; "{url}" in it becomes the server's URL.
	Command []string
	// WithPreload loads Library into Command.
	WithPreload bool
	// Expect is what Command must show: ExpectOK or ExpectFail.
	Expect string
	// Stdout and Stderr receive Command's output.
	Stdout, Stderr io.Writer
	// Server, when set, runs in the server namespace instead of the
	// built-in server (for the scenarios and for Command): its words, with
	// "{listen}" (address:port), "{host}" and "{port}" substituted and
	// KADIAG_LISTEN in its environment. It must accept connections there.
	Server []string

	// Hook, when set, is called in every lab at each Phase with the lab's
	// Stage, and the lab waits until it returns: tests hold a run at a known
	// moment with it, or look into the hops' namespaces.
	Hook func(ctx context.Context, p Phase, s *Stage)
	// conntrackRcvbuf sets the conntrack listeners' receive buffer (tests
	// shrink it to make the kernel drop events).
	conntrackRcvbuf int

	// KeepRoot runs Command as root even when kadiag was started through
	// sudo; otherwise it runs as the invoking user (SUDO_UID, SUDO_GID).
	KeepRoot bool
}

// ErrConfig is returned (wrapped) for a configuration that cannot run.
var ErrConfig = errors.New("bad simulate configuration")

// Timings are the durations the lab really uses, after scaling and the
// kernel's whole-second minimums.
type Timings struct {
	Idle          time.Duration   // the shortest established timeout of the chain
	Hops          []time.Duration // each hop's established timeout, client side first
	ResponseDelay time.Duration
	KeepIdle      time.Duration // preload, sysctl and app scenarios
	KeepIntvl     time.Duration
	KeepCnt       int
	SlowKeepIdle  time.Duration // preload-too-slow: longer than Idle
	Timeout       time.Duration
	ServerKeep    time.Duration
}

func (c *Config) scale(d time.Duration) time.Duration {
	if c.Scale <= 1 {
		return d
	}
	return time.Duration(float64(d) / c.Scale)
}

// wholeSeconds rounds to the kernel's unit for conntrack and keepalive
// timers, never below its 1 s minimum.
func wholeSeconds(d time.Duration) time.Duration {
	s := math.Round(d.Seconds())
	if s < 1 {
		s = 1
	}
	return time.Duration(s) * time.Second
}

func ceilSeconds(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if len(c.Hops) > MaxHops {
		return fmt.Errorf("%w: %d hops (at most %d)", ErrConfig, len(c.Hops), MaxHops)
	}
	for i, h := range c.Hops {
		if h.Idle <= 0 {
			return fmt.Errorf("%w: hop %d (%s) has no idle timeout", ErrConfig, i+1, h.Name)
		}
		switch h.After {
		case middlebox.Reset, middlebox.Drop, middlebox.Heal:
		default:
			return fmt.Errorf("%w: hop %d after %q (use reset, drop or heal)", ErrConfig, i+1, h.After)
		}
		if i == 0 || h.Idle < c.Idle {
			c.Idle, c.After = h.Idle, h.After
		}
	}
	if c.Idle <= 0 {
		c.Idle = middlebox.DefaultIdle
	}
	if c.After == "" {
		c.After = middlebox.Reset
	}
	switch c.After {
	case middlebox.Reset, middlebox.Drop, middlebox.Heal:
	default:
		return fmt.Errorf("%w: --after %q (use reset, drop or heal)", ErrConfig, c.After)
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if c.Scale < 1 || math.IsNaN(c.Scale) || math.IsInf(c.Scale, 0) {
		return fmt.Errorf("%w: --scale %v (use a number ≥ 1; 1 is real time)", ErrConfig, c.Scale)
	}
	if c.KeepCnt < 0 || c.KeepCnt > 127 {
		return fmt.Errorf("%w: --keepcnt %d (Linux allows 1–127)", ErrConfig, c.KeepCnt)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--keepidle", c.KeepIdle}, {"--keepintvl", c.KeepIntvl}} {
		if d.v > 32767*time.Second {
			return fmt.Errorf("%w: %s %v (Linux allows 1–32767 s)", ErrConfig, d.name, d.v)
		}
	}
	if len(c.Command) == 0 {
		if len(c.Scenarios) == 0 {
			c.Scenarios = DefaultScenarios()
		}
		for _, s := range c.Scenarios {
			if _, ok := LookupScenario(s); !ok {
				return fmt.Errorf("%w: unknown scenario %q (known: %s)", ErrConfig, s, strings.Join(Scenarios(), ", "))
			}
		}
		// Report in the table's order, whatever order they were asked in.
		var ordered []string
		for _, s := range Scenarios() {
			if slices.Contains(c.Scenarios, s) {
				ordered = append(ordered, s)
			}
		}
		c.Scenarios = ordered
		if c.needsLibrary() && len(c.Library) == 0 {
			return fmt.Errorf("%w: the preload scenarios need the bundled keepalive library, and this build has none", ErrConfig)
		}
	} else {
		if c.Expect == "" {
			c.Expect = ExpectOK
		}
		if c.Expect != ExpectOK && c.Expect != ExpectFail {
			return fmt.Errorf("%w: --expect %q (use ok or fail)", ErrConfig, c.Expect)
		}
		if c.WithPreload && len(c.Library) == 0 {
			return fmt.Errorf("%w: --preload needs the bundled keepalive library, and this build has none", ErrConfig)
		}
	}
	return nil
}

func (c *Config) needsLibrary() bool {
	for _, name := range c.Scenarios {
		if s, ok := LookupScenario(name); ok && s.Library {
			return true
		}
	}
	return false
}

// chain is the lab's middleboxes, real-world durations.
func (c *Config) chain() []middlebox.Hop {
	if len(c.Hops) > 0 {
		return c.Hops
	}
	name := c.Preset
	if name == "" {
		name = "middlebox"
	}
	// The one-hop lab is a NAT gateway, whatever the preset, as it always was.
	return []middlebox.Hop{{Name: name, Idle: c.Idle, After: c.After, NAT: true}}
}

// Timings computes the lab's durations and warns where scaling bends them.
func (c *Config) Timings() (Timings, []string) {
	var t Timings
	var warn []string
	t.Idle = wholeSeconds(c.scale(c.Idle))
	for _, h := range c.chain() {
		t.Hops = append(t.Hops, wholeSeconds(c.scale(h.Idle)))
		if c.scale(h.Idle) < 500*time.Millisecond {
			warn = append(warn, fmt.Sprintf("idle %v scaled by %g is below the kernel's 1 s minimum: the lab uses 1s", h.Idle, c.Scale))
		}
	}
	keepIdle := c.KeepIdle
	if keepIdle == 0 {
		keepIdle = min(60*time.Second, c.Idle/2)
	}
	t.KeepIdle = wholeSeconds(c.scale(keepIdle))
	keepIntvl := c.KeepIntvl
	if keepIntvl == 0 {
		keepIntvl = min(15*time.Second, keepIdle)
	}
	t.KeepIntvl = wholeSeconds(c.scale(keepIntvl))
	t.KeepCnt = c.KeepCnt
	if t.KeepCnt == 0 {
		t.KeepCnt = 4
	}
	if t.KeepIdle >= t.Idle {
		warn = append(warn, fmt.Sprintf("keepalive idle %v is not below the middlebox's idle %v in the lab: the first probe comes too late", t.KeepIdle, t.Idle))
	}
	// Too slow: the first probe comes after the expiry but before the
	// answer, so the middlebox's reaction to a late packet is on show.
	if c.ResponseDelaySet {
		t.ResponseDelay = c.scale(c.ResponseDelay)
		t.SlowKeepIdle = max(ceilSeconds((t.Idle+t.ResponseDelay)/2), t.Idle+time.Second)
	} else {
		t.SlowKeepIdle = max(ceilSeconds(c.scale(c.Idle+15*time.Second)), t.Idle+time.Second)
		t.ResponseDelay = max(c.scale(c.Idle+30*time.Second), t.SlowKeepIdle+time.Second)
	}
	if t.ResponseDelay <= t.Idle && len(c.Server) == 0 {
		warn = append(warn, fmt.Sprintf("the server answers after %v, within the middlebox's idle %v: every scenario survives", t.ResponseDelay, t.Idle))
	}
	t.Timeout = c.Timeout
	if t.Timeout == 0 {
		t.Timeout = t.ResponseDelay + max(5*time.Second, t.ResponseDelay/10)
	}
	if c.ServerKeepalive > 0 {
		t.ServerKeep = wholeSeconds(c.scale(c.ServerKeepalive))
	}
	if len(c.Command) > 0 && c.WithPreload {
		if w := preloadWarning(c.Command[0]); w != "" {
			warn = append(warn, w)
		}
	}
	if len(c.Command) > 0 && c.Scale > 1 {
		warn = append(warn, fmt.Sprintf("--scale %g shortens the lab's times only: the command's own timeouts and keepalive settings are not scaled", c.Scale))
	}
	return t, warn
}
