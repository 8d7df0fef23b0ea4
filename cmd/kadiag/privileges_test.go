package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
)

// withCaps runs kadiag as nobody holding exactly caps (effective, permitted,
// inheritable, ambient and bounding sets; nothing else) and returns stdout,
// stderr and the exit code.
func withCaps(t *testing.T, bin string, caps []string, args ...string) (string, string, int) {
	t.Helper()
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	argv := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, bin}, args...)
	return runAs(t, exec.Command("setpriv", argv...))
}

func without(caps []string, drop string) []string {
	var out []string
	for _, c := range caps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

// wantDenied checks the unprivileged answer: exit 2, one line, naming the
// missing capability and how to grant it, no stack trace.
func wantDenied(t *testing.T, what string, stderr string, code int, missing string) {
	t.Helper()
	line := strings.TrimSpace(stderr)
	if code != 2 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "kadiag: ") ||
		!strings.Contains(line, "missing ") || !strings.Contains(line, missing) || !strings.Contains(line, "setcap "+strings.ToLower(missing)) && !strings.Contains(line, strings.ToLower(missing)) {
		t.Errorf("%s: exit %d, stderr %q: want exit 2 and one line naming %s and how to grant it", what, code, stderr, missing)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("%s: stack trace: %s", what, stderr)
	}
}

// TestCapabilities: each command works as an ordinary user holding exactly
// the capabilities docs/privileges.md lists for it, and without any one of
// them fails with one line naming it (exit 2). The target is root's process
// in another network namespace, the hardest case.
func TestCapabilities(t *testing.T) {
	l := newSockLab(t, 91)
	testenv.Need(t, "setpriv")
	bin := nobodyKadiag(t)
	pid, _ := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))
	p := strconv.Itoa(pid)

	// With kernel BTF the exact read goes through BPF iterators, which
	// CAP_SYS_ADMIN allows (it stands in for CAP_BPF + CAP_PERFMON) and
	// which list descriptors without /proc/N/fd: CAP_DAC_READ_SEARCH is then
	// needed only by the pidfd_getfd fallback, which is what dropping
	// CAP_SYS_ADMIN leaves, so the error names it.
	socketCaps := []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN"}
	var socketNames map[string]string
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		socketCaps = []string{"CAP_SYS_PTRACE", "CAP_SYS_ADMIN"}
		socketNames = map[string]string{"CAP_SYS_ADMIN": "CAP_DAC_READ_SEARCH"}
	}
	cases := []struct {
		name  string
		caps  []string
		args  []string
		ok    func(stdout string) bool
		names map[string]string // the capability the error names, when not the dropped one
	}{
		{"sockets --pid", socketCaps,
			[]string{"sockets", "--pid", p, "-o", "json"}, func(out string) bool {
				var r inspect.Report
				if json.Unmarshal([]byte(out), &r) != nil || len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 2 {
					return false
				}
				for _, s := range r.Processes[0].Sockets {
					if !s.Keepalive.Source.IsExact() {
						return false
					}
				}
				return true
			}, socketNames},
		{"sockets --netns", []string{"CAP_SYS_ADMIN"},
			[]string{"sockets", "--netns", l.client.Path, "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"ESTABLISHED"`)
			}, nil},
		{"capture --netns", []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"},
			[]string{"capture", "--netns", l.server.Path, "--duration", "1s", "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"kadiag.capture/v1"`)
			}, nil},
		{"capture --pid", []string{"CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"},
			[]string{"capture", "--pid", p, "--duration", "1s", "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"kadiag.capture/v1"`)
			}, nil},
		{"preload check", []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN"},
			[]string{"preload", "check", "--pid", p, "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"kadiag.preload.check/v1"`)
			}, nil},
	}
	for _, tc := range cases {
		stdout, stderr, code := withCaps(t, bin, tc.caps, tc.args...)
		if code == 2 || !tc.ok(stdout) {
			t.Errorf("%s with %v: exit %d, stderr %q, stdout %.300q", tc.name, tc.caps, code, stderr, stdout)
		}
		for _, drop := range tc.caps {
			_, stderr, code := withCaps(t, bin, without(tc.caps, drop), tc.args...)
			named := drop
			if n, ok := tc.names[drop]; ok {
				named = n
			}
			wantDenied(t, tc.name+" without "+drop, stderr, code, named)
		}
	}

	// Commands that need no capability at all.
	dir, err := os.MkdirTemp("", "kadiag-nobody-extract-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	for _, args := range [][]string{
		{"preload", "extract", "--dir", dir},
		{"preload", "env", "--lib", dir + "/libkadiag_keepalive.so"},
		{"capture", "--read", "../../testdata/capture/eth.pcap"},
	} {
		if _, stderr, code := withCaps(t, bin, nil, args...); code == 2 {
			t.Errorf("%v with no capability: exit 2: %s", args, stderr)
		}
	}
}

// TestSimulateCapabilities: simulate builds its lab as nobody holding only
// CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW, and names whichever is missing.
func TestSimulateCapabilities(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv")
	bin := nobodyKadiag(t)
	caps := []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW"}
	stdout, stderr, code := withCaps(t, bin, caps, "simulate", "--idle", "2s", "--response-delay", "4s", "--scenario", "none,preload", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"kadiag.simulate/v1"`) {
		t.Errorf("simulate with %v: exit %d, stderr %q", caps, code, stderr)
	}
	for _, drop := range caps {
		_, stderr, code := withCaps(t, bin, without(caps, drop), "simulate", "--scenario", "none")
		wantDenied(t, "simulate without "+drop, stderr, code, drop)
	}
}
