package main

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// sleepers lists running processes whose command line starts with one of
// the marker commands (sleep with an unusual duration only tests use).
func sleepers(markers ...string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		for _, m := range markers {
			if strings.HasPrefix(cmdline, m) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// simulateRun runs kadiag simulate to its end (at most two minutes).
func simulateRun(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(buildKadiag(t), append([]string{"simulate"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), exitCode(err)
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("simulate %v did not end within two minutes: %s", args, stderr.String())
	}
	return "", "", -1
}

// TestSimulateHungAndDaemonCommands: a command that hangs is killed with
// everything it started at --timeout; a command that double-forks daemons
// into sessions of their own (out of its process group) and exits leaves
// none of them running either.
func TestSimulateHungAndDaemonCommands(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	base := []string{"--idle", "2s", "--response-delay", "3s"}

	_, stderr, code := simulateRun(t, nil, append(base, "--timeout", "2s", "--expect", "fail", "--",
		"sh", "-c", "sleep 3011 & sleep 3012 & trap '' TERM; sleep 3013")...)
	if code == 2 {
		t.Fatalf("hung command: exit 2: %s", stderr)
	}
	if left := sleepers("sleep 3011", "sleep 3012", "sleep 3013"); len(left) > 0 {
		t.Errorf("hung command: %v still running after kadiag returned", left)
	}

	_, stderr, code = simulateRun(t, nil, append(base, "--expect", "fail", "--",
		"sh", "-c", "setsid sleep 3021 & (sleep 3022 &) ; nohup sleep 3023 >/dev/null 2>&1 & exit 0")...)
	if code == 2 {
		t.Fatalf("daemon-forking command: exit 2: %s", stderr)
	}
	if !testenv.WaitUntil(5*time.Second, func() bool { return len(sleepers("sleep 3021", "sleep 3022", "sleep 3023")) == 0 }) {
		t.Errorf("daemon-forking command: %v outlived kadiag", sleepers("sleep 3021", "sleep 3022", "sleep 3023"))
	}
}

// TestSimulateSudoIdentity: under sudo (SUDO_UID/SUDO_GID) the user's
// command runs as the invoking user, the bundled library still loads into
// it; --keep-root keeps root; broken sudo variables are one-line errors.
func TestSimulateSudoIdentity(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	sudo := []string{"SUDO_UID=65534", "SUDO_GID=65534", "SUDO_USER=nobody"}
	ids := []string{"sh", "-c", "echo ids $(id -u) $(id -g) $(id -G | wc -w) $(grep ^CapEff /proc/self/status | cut -f2)"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"sudo", nil, "ids 65534 65534 1 0000000000000000"},
		{"keep-root", []string{"--keep-root"}, "ids 0 0 "},
	} {
		stdout, stderr, code := simulateRun(t, sudo, append(append([]string{"--idle", "2s", "--response-delay", "1s", "--expect", "ok"}, tc.args...),
			append([]string{"--"}, ids...)...)...)
		line := ""
		sc := bufio.NewScanner(strings.NewReader(stdout))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ids ") {
				line = sc.Text()
			}
		}
		if code != 0 || !strings.HasPrefix(line, tc.want) {
			t.Errorf("%s: exit %d, command printed %q, want %q…; stderr %s", tc.name, code, line, tc.want, stderr)
		}
	}

	// The library reaches the command as its own descriptor: probes flow.
	testenv.Need(t, "curl")
	stdout, stderr, code := simulateRun(t, sudo, "--idle", "2s", "--response-delay", "4s", "--preload", "--expect", "ok", "-o", "json",
		"--", "curl", "-sS", "--no-keepalive", "-o", "/dev/null", "{url}")
	if code != 0 || !strings.Contains(stdout, `"outcome": "ok"`) {
		t.Errorf("curl as the sudo user with --preload: exit %d, stdout %.400s, stderr %s", code, stdout, stderr)
	}

	_, stderr, code = simulateRun(t, []string{"SUDO_UID=alice", "SUDO_GID=1000"}, "--idle", "2s", "--", "true")
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--keep-root") {
		t.Errorf("bad SUDO_UID: exit %d, stderr %q: want exit 2 and one line", code, stderr)
	}
}

// TestSimulateSignalsEveryPhase: SIGINT and SIGTERM in setup (lab built,
// client not started), while running, and in teardown (client done, lab
// not released): kadiag exits 2 with one line, and the lab's namespaces,
// veth links, nftables tables and processes are all gone (SIGKILL in every
// phase is TestSimulateSIGKILL).
func TestSimulateSignalsEveryPhase(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "ip", "nft")
	bin := buildKadiag(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, tc := range []struct{ phase, pause string }{{"setup", "setup"}, {"running", ""}, {"teardown", "teardown"}} {
			links, ruleset := hostLinks(t), hostRuleset(t)
			args := []string{"simulate", "--idle", "2s", "--response-delay", "30s", "--", "sh", "-c", "sleep 3031 & sleep 3032"}
			if tc.phase == "teardown" {
				args = []string{"simulate", "--idle", "2s", "--response-delay", "1s", "--", "sh", "-c", "sleep 3033 & exit 0"}
			}
			cmd, lines := startAtPhase(t, bin, args, tc.pause, func(int) bool { return len(sleepers("sleep 3031", "sleep 3032")) == 2 })
			pid := cmd.Process.Pid
			lab := labNetns(pid)
			desc := descendants(pid)
			if len(lab) < 3 {
				t.Errorf("%v in %s: %d lab namespaces, want 3", sig, tc.phase, len(lab))
			}
			syscall.Kill(pid, sig)
			var rest []string
			for l := range lines {
				rest = append(rest, l)
			}
			code := exitCode(cmd.Wait())
			if code != 2 || len(rest) != 1 || !strings.Contains(rest[0], "interrupted") {
				t.Errorf("%v in %s: exit %d, stderr after the signal %q: want exit 2 and one line", sig, tc.phase, code, rest)
			}
			gone := testenv.WaitUntil(10*time.Second, func() bool {
				for _, d := range desc {
					if alive(d) {
						return false
					}
				}
				return len(holdersOf(lab)) == 0 && len(sleepers("sleep 3031", "sleep 3032", "sleep 3033")) == 0
			})
			if !gone {
				var left []int
				for _, d := range desc {
					if alive(d) {
						left = append(left, d)
					}
				}
				t.Errorf("%v in %s: still alive %v; namespace holders %v", sig, tc.phase, left, holdersOf(lab))
			}
			if l := hostLinks(t); l != links {
				t.Errorf("%v in %s: host links changed:\n%s\n---\n%s", sig, tc.phase, links, l)
			}
			if r := hostRuleset(t); r != ruleset {
				t.Errorf("%v in %s: host nftables ruleset changed", sig, tc.phase)
			}
		}
	}
}
