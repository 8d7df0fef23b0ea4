package path

import (
	"fmt"
	"math"
	"time"
)

// Schema names the JSON contract of a Result.
const Schema = "kadiag.path/v1"

// Direction is which end sends after the idle.
type Direction string

// The two directions of a test.
const (
	// ToClient: the counterpart sends after the idle (a late reply: the
	// failure kadiag exists for).
	ToClient Direction = "to-client"
	// ToServer: the client sends after the idle and the counterpart answers.
	ToServer Direction = "to-server"
)

// After-expiry behaviours of a direction.
const (
	AfterReset = "reset" // an RST, seen by one end (DirectionResult.ResetBy)
	AfterDrop  = "drop"  // silence: nothing arrived by the deadline
	AfterHeal  = "heal"  // the flow survived in this direction past the other's expiry
	AfterNone  = "none"  // nothing died up to --max
)

// Outcomes of one test.
const (
	Delivered = "delivered"
	Reset     = "reset"
	Silent    = "silent"
	// Closed: the server closed the idle connection itself (FIN) before the
	// test; no verdict about the path.
	Closed = "closed"
)

// Who saw an RST.
const (
	ByClient      = "client"
	ByCounterpart = "counterpart"
)

// Result is a path measurement: the contract of `kadiag path -o json`.
type Result struct {
	Schema      string     `json:"schema"`
	Target      string     `json:"target"`
	Counterpart bool       `json:"counterpart"`
	Directions  Directions `json:"directions"`
	// Keepalive is the --keepalive check; null when not asked for.
	Keepalive *KeepaliveResult `json:"keepalive"`
	// ServerIdleCloseS is the idle after which the server itself closed
	// connections (FIN); null when it did not.
	ServerIdleCloseS *float64 `json:"server_idle_close_s"`
	ElapsedS         float64  `json:"elapsed_s"`
	Connections      int      `json:"connections"`

	// Complete is false when the measurement was interrupted (SIGINT) or
	// the path failed before every direction was bracketed.
	Complete bool `json:"complete"`
	// PathFailed says the control connection broke: the path itself
	// failed, which is no idle expiry.
	PathFailed string  `json:"path_failed,omitempty"`
	MinS       float64 `json:"min_s"`
	MaxS       float64 `json:"max_s"`
	Precision  float64 `json:"precision"`
	// RTTMS is the round-trip time measured on the control connection;
	// DeadlineS the wait after a test before it counts as silent.
	RTTMS     float64 `json:"rtt_ms"`
	DeadlineS float64 `json:"deadline_s"`
	// Summary says in words what the path does, per direction and between
	// them (the asymmetry of a healing middlebox).
	Summary []string `json:"summary"`
	// ExpectAtLeastS is --expect-at-least, when given.
	ExpectAtLeastS *float64 `json:"expect_at_least_s,omitempty"`
}

// Directions holds one result per measured direction; a direction not
// measured is absent.
type Directions struct {
	ToClient *DirectionResult `json:"to_client,omitempty"`
	ToServer *DirectionResult `json:"to_server,omitempty"`
}

// DirectionResult is the answer for one direction.
type DirectionResult struct {
	// IdleTimeoutS is the bracket's midpoint; null when nothing died up to
	// --max (or the measurement ended first).
	IdleTimeoutS *float64 `json:"idle_timeout_s"`
	// BracketS is [longest idle that survived, shortest that died]; the
	// upper end is null when nothing died.
	BracketS    [2]*float64 `json:"bracket_s"`
	AfterExpiry string      `json:"after_expiry"`
	// ResetBy is who saw the RST when AfterExpiry is reset.
	ResetBy string `json:"reset_by,omitempty"`
	// Bracketed is true once the bracket is final.
	Bracketed bool `json:"bracketed"`
	// Tests are the finished tests, by idle.
	Tests []Test `json:"tests"`
}

// Test is one connection's test.
type Test struct {
	// IdleS is the idle the connection really had when tested.
	IdleS   float64 `json:"idle_s"`
	Outcome string  `json:"outcome"`
	By      string  `json:"by,omitempty"`
	// Late marks a delivery seen only after the deadline, when the ping
	// that would have confirmed the loss came back: slow hosts, not a
	// forgotten flow.
	Late bool `json:"late,omitempty"`
}

// KeepaliveResult is the --keepalive check: connections with kernel
// keepalive probes every IntervalS, tested after the flow's timeout.
type KeepaliveResult struct {
	IntervalS float64 `json:"interval_s"`
	KeptAlive bool    `json:"kept_alive"`
	// Tests are the keepalive connections' tests (one per direction).
	Tests []Test `json:"tests"`
}

// Shortest is the shortest measured idle timeout over the directions, and
// whether there is one.
func (r *Result) Shortest() (time.Duration, bool) {
	best := math.Inf(1)
	for _, d := range []*DirectionResult{r.Directions.ToClient, r.Directions.ToServer} {
		if d != nil && d.IdleTimeoutS != nil && *d.IdleTimeoutS < best {
			best = *d.IdleTimeoutS
		}
	}
	if math.IsInf(best, 1) {
		return 0, false
	}
	return time.Duration(best * float64(time.Second)), true
}

// AtLeast is the longest idle every measured direction survived: what the
// path is known to keep.
func (r *Result) AtLeast() float64 {
	least := math.Inf(1)
	for _, d := range []*DirectionResult{r.Directions.ToClient, r.Directions.ToServer} {
		if d == nil {
			continue
		}
		lo := 0.0
		if d.BracketS[0] != nil {
			lo = *d.BracketS[0]
		}
		least = math.Min(least, lo)
	}
	if math.IsInf(least, 1) {
		return 0
	}
	return least
}

// ExpectPassed reports whether the path keeps flows at least expect: true
// or false once known, and known=false while the bracket still straddles it.
func (r *Result) ExpectPassed(expect time.Duration) (passed, known bool) {
	e := expect.Seconds()
	if short, ok := r.Shortest(); ok && short.Seconds() < e {
		return false, true
	}
	if r.ServerIdleCloseS != nil && *r.ServerIdleCloseS < e {
		return false, true
	}
	if r.AtLeast() >= e {
		return true, true
	}
	for _, d := range []*DirectionResult{r.Directions.ToClient, r.Directions.ToServer} {
		if d != nil && d.BracketS[1] != nil && *d.BracketS[1] <= e {
			return false, true
		}
	}
	return false, false
}

func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func fptr(v float64) *float64 { return &v }

// fmtS writes seconds for the summary sentences.
func fmtS(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f s", v)
	}
	return fmt.Sprintf("%.1f s", v)
}
