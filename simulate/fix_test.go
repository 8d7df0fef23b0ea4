package simulate

import (
	"strings"
	"testing"

	"github.com/kadiag/kadiag/middlebox"
)

// TestFixScenarios runs the kadiag fix scenarios in real labs: the bundled
// static client with keepalive off survives when kadiag fix --pid reaches
// it before the middlebox forgets, fails fast (a reset, not a hang) when it
// comes after, and survives in a cgroup with kadiag fix's programs; the
// client reads its own socket back. The none scenario, the same client
// without any fix, hangs.
func TestFixScenarios(t *testing.T) {
	t.Parallel()
	res := run(t, fast(Config{After: middlebox.Reset, Scenarios: []string{None, FixLive, FixLiveLate, FixCgroup}}))
	want := map[string]string{None: OutcomeTimeout, FixLive: OutcomeOK, FixLiveLate: OutcomeReset, FixCgroup: OutcomeOK}
	for name, outcome := range want {
		s := scenario(t, res, name)
		if s.Outcome != outcome || !s.Passed {
			t.Errorf("%s: outcome %s passed %v, want %s: %s", name, s.Outcome, s.Passed, outcome, s.Evidence)
		}
	}
	// The client reads its socket right after connecting: in the cgroup the
	// kernel has set the options by then; the live fix comes later, and its
	// probes are seen on the wire.
	for name, sock := range map[string]string{
		None: "keepalive=0", FixLive: "keepalive=0", FixCgroup: "keepalive=1 idle=1 intvl=1 cnt=4",
	} {
		if s := scenario(t, res, name); !strings.Contains(s.Socket, sock) {
			t.Errorf("%s: socket %q, want %q", name, s.Socket, sock)
		}
	}
	if live := scenario(t, res, FixLive); live.Probes == 0 || live.ProbeAcks == 0 {
		t.Errorf("fixed live: %d probes, %d answered; want answered probes after the fix", live.Probes, live.ProbeAcks)
	}
	late, none := scenario(t, res, FixLiveLate), scenario(t, res, None)
	if late.ElapsedS >= none.ElapsedS {
		t.Errorf("fixed after forgetting: failed after %.1fs, the unfixed client after %.1fs: want it to fail sooner", late.ElapsedS, none.ElapsedS)
	}
}

func TestFixScenariosOnRequest(t *testing.T) {
	for _, name := range DefaultScenarios() {
		if strings.HasPrefix(name, "fix-") {
			t.Errorf("%s runs by default: it needs CAP_BPF or CAP_SYS_PTRACE beyond the lab's", name)
		}
	}
	for _, name := range []string{FixLive, FixLiveLate, FixCgroup} {
		if _, ok := LookupScenario(name); !ok {
			t.Errorf("%s is not in the table", name)
		}
	}
}
