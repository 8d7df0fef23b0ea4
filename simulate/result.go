package simulate

// Schema names the JSON contract of Result.
const Schema = "kadiag.simulate/v1"

// Outcomes of a scenario or user command.
const (
	OutcomeOK      = "ok"      // the response arrived (the command exited 0)
	OutcomeTimeout = "timeout" // nothing arrived in time
	OutcomeReset   = "reset"   // the connection was reset
	OutcomeFailed  = "failed"  // a user command exited non-zero without a reset on the wire
	OutcomeError   = "error"   // the client itself failed (bad address, refused, ...)
)

// Result is a whole `kadiag simulate` run. Its JSON is a fixed contract:
// fields may be added, never renamed.
type Result struct {
	Schema string `json:"schema"`
	// IdleS is the middlebox's real-world idle timeout; LabIdleS the scaled
	// one the lab used.
	IdleS  float64 `json:"idle_s"`
	After  string  `json:"after"`
	Scale  float64 `json:"scale"`
	Preset string  `json:"preset,omitempty"`
	// Chain names the chain of middleboxes (--hop eks-nat), if any; Hops
	// lists the lab's middleboxes, client side first (one for --preset).
	Chain    string      `json:"chain,omitempty"`
	Hops     []HopConfig `json:"hops"`
	LabIdleS float64     `json:"lab_idle_s"`
	// ResponseDelayS is how long the lab's server worked before answering.
	ResponseDelayS float64 `json:"response_delay_s"`
	// KeepIdleS, KeepIntvlS and KeepCnt are the keepalive values the
	// preload, sysctl and app scenarios used in the lab.
	KeepIdleS     float64  `json:"keepidle_s"`
	KeepIntvlS    float64  `json:"keepintvl_s"`
	KeepCnt       int      `json:"keepcnt"`
	SlowKeepIdleS float64  `json:"slow_keepidle_s"`
	TimeoutS      float64  `json:"timeout_s"`
	Family        string   `json:"family"`
	Command       []string `json:"command,omitempty"`
	Server        []string `json:"server,omitempty"`
	// Preload: the command ran with the bundled keepalive library.
	Preload   bool             `json:"preload,omitempty"`
	Scenarios []ScenarioResult `json:"scenarios"`
	Summary   Summary          `json:"summary"`
	Warnings  []string         `json:"warnings,omitempty"`
	Pcap      string           `json:"pcap,omitempty"`
}

// ScenarioResult is one scenario (or the user command) in its own lab.
type ScenarioResult struct {
	Name     string  `json:"name"`
	Outcome  string  `json:"outcome"`
	Expected string  `json:"expected"`
	Passed   bool    `json:"passed"`
	ElapsedS float64 `json:"elapsed_s"`
	// Probes counts keepalive probes the client sent on the client link;
	// ProbeAcks the answers it got.
	Probes    int `json:"probes"`
	ProbeAcks int `json:"probe_acks"`
	// Resets counts RSTs the client received.
	Resets int `json:"resets"`
	// Packets counts TCP packets on the client link.
	Packets int `json:"packets"`
	// ExpiredS is when the first hop to forget a flow forgot it: that
	// flow's last packet on the hop's inside link before a silence longer
	// than the hop's idle timeout, plus that timeout.
	ExpiredS *float64 `json:"expired_s,omitempty"`
	// Conntrack is the first hop's conntrack timeline (every hop's is in
	// Hops).
	Conntrack []ConntrackEvent `json:"conntrack"`
	// Hops is every middlebox of the lab, client side first, with when it
	// forgot the flow; ForgottenBy the 1-based index of the first to
	// forget (nil: none did).
	Hops        []HopResult `json:"hops"`
	ForgottenBy *int        `json:"forgotten_by"`
	// Notes say where the evidence is incomplete (a conntrack event stream
	// that failed).
	Notes []string `json:"notes,omitempty"`
	// Evidence is one sentence saying what happened and why.
	Evidence string `json:"evidence"`
	// Client is what the client reported (the bundled client's line, or
	// the user command's exit status); Socket its keepalive options as the
	// bundled client read them back from its socket.
	// Wire is the client link's packets for timelines; not in the JSON.
	Wire     []WireEvent `json:"-"`
	Client   string      `json:"client,omitempty"`
	Socket   string      `json:"socket,omitempty"`
	ExitCode int         `json:"exit_code"`
}

// HopConfig is one middlebox of the lab as configured: real-world idle
// timeout and the scaled one the lab used.
type HopConfig struct {
	Name     string  `json:"name"`
	IdleS    float64 `json:"idle_s"`
	LabIdleS float64 `json:"lab_idle_s"`
	After    string  `json:"after"`
	NAT      bool    `json:"nat"`
}

// HopResult is one middlebox in a scenario's lab and what it did: when it
// forgot the flow (lab seconds from the scenario's start, nil if it kept
// it) and its conntrack timeline.
type HopResult struct {
	Name      string           `json:"name"`
	IdleS     float64          `json:"idle_s"`
	LabIdleS  float64          `json:"lab_idle_s"`
	After     string           `json:"after"`
	NAT       bool             `json:"nat"`
	ForgotAtS *float64         `json:"forgot_at_s"`
	Conntrack []ConntrackEvent `json:"conntrack"`
}

// Summary counts scenarios.
type Summary struct {
	Scenarios int `json:"scenarios"`
	Passed    int `json:"passed"`
}

// Passed reports whether every scenario met its expectation.
func (r *Result) Passed() bool {
	return r.Summary.Scenarios > 0 && r.Summary.Passed == r.Summary.Scenarios
}
