package simulate

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/simulate/client"
)

// TestScenarioHooks: a scenario's Prepare runs before the client starts and
// can start it in a cgroup of its own (what a sock_ops fix attaches to);
// its During runs at the chosen moment of the run with the client's pid
// (what a live fix acts on), before the middlebox forgets; the cleanup
// runs at teardown. A scenario entry outside the built-in table runs the
// same way.
func TestScenarioHooks(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	var root string
	for _, r := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.controllers")); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		t.Fatal("no cgroup v2 hierarchy")
	}
	dir := filepath.Join(root, "kadiag-simulate-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })

	var duringAt time.Duration
	var duringCgroup, comm string // comm: argv[0]
	cleaned := false
	sc := Scenario{Name: "hooked", Expect: ExpectFail,
		Prepare: func(_ context.Context, s *Stage) (func(), error) {
			f, err := os.Open(dir)
			if err != nil {
				return nil, err
			}
			if s.Cmd.SysProcAttr == nil {
				s.Cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			s.Cmd.SysProcAttr.UseCgroupFD, s.Cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
			return func() { f.Close(); cleaned = true }, nil
		},
		At: func(t Timings) time.Duration { return t.Idle / 2 },
		During: func(_ context.Context, s *Stage) error {
			duringAt = time.Since(s.Start)
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(s.Pid) + "/cgroup")
			c, _ := os.ReadFile("/proc/" + strconv.Itoa(s.Pid) + "/cmdline")
			duringCgroup, comm = string(b), strings.SplitN(string(c), "\x00", 2)[0]
			return nil
		},
	}
	cfg := fast(Config{Scenarios: []string{None}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tm, _ := cfg.Timings()
	exe, err := client.Binary("")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := memFile("kadiag-client", exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	ev, err := runInLab(context.Background(), &cfg, tm, scenarioRun(&sc, tm, memPath(bin), nil), identity{})
	if err != nil {
		t.Fatal(err)
	}
	if !cleaned {
		t.Error("Prepare's cleanup did not run")
	}
	if comm != "kadiag-client" || !strings.Contains(duringCgroup, "/"+filepath.Base(dir)) {
		t.Errorf("During saw pid of %q in cgroups %q: want the client, in %s", comm, duringCgroup, dir)
	}
	if duringAt < tm.Idle/2 || duringAt > tm.Idle {
		t.Errorf("During ran at %v, want at %v (before the middlebox forgets at %v)", duringAt, tm.Idle/2, tm.Idle)
	}
	if !ev.result.Passed || ev.result.ForgottenBy == nil {
		t.Errorf("the hooked scenario: %+v", ev.result)
	}
}
