package simulate

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// Scenario names of the built-in table, in the order kadiag runs and
// reports them.
const (
	None           = "none"
	Preload        = "preload"
	Sysctl         = "sysctl"
	App            = "app"
	PreloadTooSlow = "preload-too-slow"
)

// Expectations: a scenario either survives the idle period or does not.
const (
	ExpectOK   = "ok"
	ExpectFail = "fail"
)

// Scenario is one built-in scenario: a client (the bundled one, with these
// arguments and this environment), what it must show, and what the lab does
// for it. A new scenario is one entry in the scenarios table below plus its
// sentence in reports (reports.scenarioWho).
type Scenario struct {
	Name string
	// Expect is ExpectOK or ExpectFail.
	Expect string
	// Library: the scenario loads the bundled keepalive library (Client gets
	// its path in ClientEnv.Library).
	Library bool
	// Client returns the bundled client's arguments (before -t and the URL)
	// and environment (PATH is always set). Nil: no arguments, keepalive off.
	Client func(e ClientEnv) (args, env []string)
	// Sysctls are written in the client namespace before the client starts
	// (keys like "net/ipv4/tcp_keepalive_time").
	Sysctls func(t Timings) [][2]string
	// Prepare runs once the lab is up and before the client starts. It may
	// change the client's command (for example start it in a cgroup of its
	// own: SysProcAttr.UseCgroupFD) and returns what undoes it at teardown.
	Prepare func(ctx context.Context, s *Stage) (cleanup func(), err error)
	// During runs once the client is running, At into the scenario (lab
	// time: before or after the first hop forgets the flow, see
	// Timings.Idle), with the client's pid in Stage.Pid. An error ends the
	// run as a lab error.
	During func(ctx context.Context, s *Stage) error
	At     func(t Timings) time.Duration
	// OnRequest: run only when --scenario names it, not by default (it
	// needs more than the lab's privileges: kadiag fix's CAP_BPF).
	OnRequest bool
}

// ClientEnv is what a Scenario's Client builds its arguments from.
type ClientEnv struct {
	Timings Timings
	// Library is the path the bundled keepalive library loads from (empty
	// unless Scenario.Library).
	Library string
}

// Preload returns the environment that loads the library with these
// keepalive values.
func (e ClientEnv) Preload(idle, intvl time.Duration, cnt int) []string {
	return preloadEnv(e.Library, idle, intvl, cnt)
}

// Stage is a scenario's lab as its Prepare and During hooks (and
// Config.Hook) see it.
type Stage struct {
	// Name is the scenario's ("command" for a user command).
	Name    string
	Lab     *Lab
	Timings Timings
	// Cmd is the client's command: Prepare may change it; During sees it
	// started.
	Cmd *exec.Cmd
	// Pid is the client's process id (During only).
	Pid int
	// Start is when the client started (During only).
	Start time.Time
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }

// scenarios is the one table of built-in scenarios.
var scenarios = []Scenario{
	{Name: None, Expect: ExpectFail},
	{Name: Preload, Expect: ExpectOK, Library: true, Client: func(e ClientEnv) ([]string, []string) {
		t := e.Timings
		return nil, e.Preload(t.KeepIdle, t.KeepIntvl, t.KeepCnt)
	}},
	{Name: Sysctl, Expect: ExpectFail, Sysctls: func(t Timings) [][2]string {
		// The Kubernetes-sysctl myth: the timings change, SO_KEEPALIVE stays off.
		return [][2]string{
			{"net/ipv4/tcp_keepalive_time", secs(t.KeepIdle)},
			{"net/ipv4/tcp_keepalive_intvl", secs(t.KeepIntvl)},
			{"net/ipv4/tcp_keepalive_probes", strconv.Itoa(t.KeepCnt)},
		}
	}},
	{Name: App, Expect: ExpectOK, Client: func(e ClientEnv) ([]string, []string) {
		t := e.Timings
		return []string{"-k", "-i", secs(t.KeepIdle), "-n", secs(t.KeepIntvl), "-c", strconv.Itoa(t.KeepCnt)}, nil
	}},
	{Name: PreloadTooSlow, Expect: ExpectFail, Library: true, Client: func(e ClientEnv) ([]string, []string) {
		t := e.Timings
		return nil, e.Preload(t.SlowKeepIdle, t.KeepIntvl, t.KeepCnt)
	}},
	{Name: FixLive, Expect: ExpectOK, OnRequest: true, At: beforeForgetting, During: fixLive},
	{Name: FixLiveLate, Expect: ExpectFail, OnRequest: true, At: afterForgetting, During: fixLive},
	{Name: FixCgroup, Expect: ExpectOK, OnRequest: true, Prepare: fixCgroup},
}

// Scenarios returns the names of the built-in scenarios, in their order.
func Scenarios() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.Name
	}
	return names
}

// DefaultScenarios returns the scenarios a run without --scenario runs:
// all but those run on request only.
func DefaultScenarios() []string {
	var names []string
	for _, s := range scenarios {
		if !s.OnRequest {
			names = append(names, s.Name)
		}
	}
	return names
}

// LookupScenario returns the built-in scenario of that name.
func LookupScenario(name string) (Scenario, bool) {
	i := slices.IndexFunc(scenarios, func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, false
	}
	return scenarios[i], true
}

// scenarioPort is the server port of a built-in scenario (see ServerPort).
func scenarioPort(name string) int {
	return ServerPort + 1 + slices.IndexFunc(scenarios, func(s Scenario) bool { return s.Name == name })
}

// ServerPort is the TCP port of the lab's HTTP server for a user command.
// Built-in scenario i of the table listens on ServerPort+1+i, so the flows
// of parallel labs never share a 4-tuple in the one --pcap file: the kernel
// picks the clients' ports from a table shared by all namespaces, and two
// labs connecting at once can get the same one, which makes Wireshark's
// analysis run two flows together.
const ServerPort = 8080
