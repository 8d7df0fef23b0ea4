package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/fix"
	"github.com/kadiag/kadiag/internal/bpf/bpftest"
	"github.com/kadiag/kadiag/internal/testenv"
)

func decodeFix(t *testing.T, what, out string) fix.Report {
	t.Helper()
	validateJSON(t, what, out)
	var r fix.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	return r
}

// TestFixCommand runs kadiag fix as a user does: the live fix in dry-run and
// for real, the cgroup policy pinned, listed and removed; every JSON
// document against docs/schema/kadiag.fix.v1.json.
func TestFixCommand(t *testing.T) {
	l := newSockLab(t, 94)
	pid, socks := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))
	p := strconv.Itoa(pid)

	out, stderr, code := runKadiag(t, "fix", "--pid", p, "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	r := decodeFix(t, "fix --dry-run", out)
	if r.Summary.WouldChange != 2 || r.Summary.Changed != 0 || !r.DryRun {
		t.Errorf("dry run summary %+v", r.Summary)
	}
	out, stderr, code = runKadiag(t, "fix", "--pid", p, "--keepidle", "30s", "--keepintvl", "5s", "--keepcnt", "3", "--user-timeout", "40s", "-o", "json")
	if code != 0 {
		t.Fatalf("fix: exit %d: %s", code, stderr)
	}
	r = decodeFix(t, "fix", out)
	for _, s := range r.Sockets {
		if s.FD != socks[0].FD {
			continue
		}
		want := fix.Options{Keepalive: true, IdleS: 30, IntervalS: 5, Count: 3, UserTimeoutMs: 40000}
		if s.Action != fix.Changed || s.After != want {
			t.Errorf("fd %d: %+v, want changed to %+v", s.FD, s, want)
		}
	}
	// The tuned socket's shorter idle (25s), interval (4s) and user
	// timeout (7s) stay; only its longer count (6) is shortened.
	for _, s := range r.Sockets {
		want := fix.Options{Keepalive: true, IdleS: 25, IntervalS: 4, Count: 3, UserTimeoutMs: 7000}
		if s.FD == socks[1].FD && (s.After != want || strings.Join(s.Plan, ",") != "TCP_KEEPCNT") {
			t.Errorf("tuned socket: %+v, want only TCP_KEEPCNT changed, to %+v", s, want)
		}
	}
	table, _, code := runKadiag(t, "fix", "--pid", p)
	if code != 0 || !strings.Contains(table, "unchanged") || !strings.Contains(table, "via pidfd") {
		t.Errorf("second run: exit %d\n%s", code, table)
	}

	dir := bpftest.Cgroup(t)
	t.Cleanup(func() { runKadiag(t, "fix", "--remove", "--cgroup", dir) })
	for i := 0; i < 2; i++ {
		out, stderr, code = runKadiag(t, "fix", "--cgroup", dir, "-o", "json")
		if code != 0 {
			t.Fatalf("fix --cgroup: exit %d: %s", code, stderr)
		}
		r = decodeFix(t, "fix --cgroup", out)
		if len(r.Policies) != 1 || r.Policies[0].Pinned == "" || r.Policies[0].Replaced != (i == 1) {
			t.Errorf("run %d: %+v", i, r.Policies)
		}
	}
	if _, s := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")); s[0].Keepalive != 0 {
		t.Errorf("a client outside the cgroup was touched: %+v", s[0])
	}
	inCg := l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")
	bpftest.Into(t, inCg, dir)
	if _, s := startReady(t, inCg); s[0].Keepalive != 1 || s[0].Idle != 60 {
		t.Errorf("client in the cgroup: %+v, want keepalive on, idle 60", s[0])
	}
	out, _, code = runKadiag(t, "fix", "--list", "-o", "json")
	if r = decodeFix(t, "fix --list", out); code != 0 || !hasPolicy(r, dir) {
		t.Errorf("--list: exit %d, %+v", code, r.Policies)
	}
	out, stderr, code = runKadiag(t, "fix", "--remove", "--cgroup", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("--remove: exit %d: %s", code, stderr)
	}
	decodeFix(t, "fix --remove", out)
	after := l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")
	bpftest.Into(t, after, dir)
	if _, s := startReady(t, after); s[0].Keepalive != 0 {
		t.Errorf("after --remove a new socket is still touched: %+v", s[0])
	}
	_, stderr, code = runKadiag(t, "fix", "--remove", "--cgroup", dir)
	if code != 2 || !strings.Contains(stderr, "no kadiag policy attached") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("second --remove: exit %d, %q", code, stderr)
	}
}

func hasPolicy(r fix.Report, dir string) bool {
	for _, p := range r.Policies {
		if p.Cgroup == dir {
			return true
		}
	}
	return false
}

// TestFixUsage: bad flags and targets are one line and exit 2.
func TestFixUsage(t *testing.T) {
	for _, args := range [][]string{
		{"fix"},
		{"fix", "--cgroup-of"},
		{"fix", "--list", "--pid", "1"},
		{"fix", "--remove"},
		{"fix", "--pid", "1", "--hold"},
		{"fix", "--cgroup", "/", "--watch", "1s"},
		{"fix", "--pid", "1", "--via", "ptrace"},
		{"fix", "--pid", "1", "--keepidle", "0s"},
		{"fix", "--pid", "1", "--keepcnt", "200"},
		{"fix", "--pid", "1", "--keepidle", "1.5s"},
		{"fix", "--pid", "1", "--watch", "soon"},
		{"fix", "--pid", "1", "--watch", "1s", "--via", "bpf"},
		{"fix", "--pid", "1", "--watch", "1s", "--dry-run"},
		{"fix", "--pid", "999999999"},
		{"fix", "--cgroup", "/no/such/cgroup"},
	} {
		_, stderr, code := runKadiag(t, args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "kadiag: ") {
			t.Errorf("%v: exit %d, stderr %q: want exit 2 and one line", args, code, stderr)
		}
	}
}

// TestPreloadEnvFlagNames: preload env takes simulate's and fix's names,
// and the old ones as aliases.
func TestPreloadEnvFlagNames(t *testing.T) {
	a, _, c1 := runKadiag(t, "preload", "env", "--keepidle", "30s", "--keepintvl", "10s", "--keepcnt", "3")
	b, _, c2 := runKadiag(t, "preload", "env", "--idle", "30s", "--interval", "10s", "--count", "3")
	if c1 != 0 || c2 != 0 || a != b || !strings.Contains(a, "KADIAG_KEEPIDLE=30") || !strings.Contains(a, "KADIAG_KEEPCNT=3") {
		t.Errorf("new names (exit %d):\n%s\nold names (exit %d):\n%s", c1, a, c2, b)
	}
}

// TestFixCapabilities: kadiag fix as nobody holding exactly the
// capabilities docs/privileges.md lists works, and without any one of
// them fails with one line naming it (exit 2).
func TestFixCapabilities(t *testing.T) {
	l := newSockLab(t, 95)
	testenv.Need(t, "setpriv")
	bin := nobodyKadiag(t)
	rootPID, _ := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))

	// A process of nobody's own, in kadiag's namespace, for --via bpf.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	own, _ := startReady(t, exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python3(t), "testdata/keepalive_client.py", "127.0.0.1", port))
	dir := bpftest.Cgroup(t)

	cases := []struct {
		name string
		caps []string
		args []string
		ok   func(stdout string) bool
	}{
		{"fix --pid", []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"},
			[]string{"fix", "--pid", strconv.Itoa(rootPID), "--dry-run", "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"would_change": 2`)
			}},
		{"fix --via bpf", []string{"CAP_BPF", "CAP_PERFMON"},
			[]string{"fix", "--pid", strconv.Itoa(own), "--via", "bpf", "--all-sockets", "--dry-run", "-o", "json"}, func(out string) bool {
				return strings.Contains(out, `"would_change": 2`)
			}},
		{"fix --cgroup --dry-run", nil, []string{"fix", "--cgroup", dir, "--dry-run"}, func(out string) bool {
			return strings.Contains(out, "would attach")
		}},
	}
	for _, tc := range cases {
		stdout, stderr, code := withCaps(t, bin, tc.caps, tc.args...)
		if code != 0 || !tc.ok(stdout) {
			t.Errorf("%s with %v: exit %d, stderr %q, stdout %.400q", tc.name, tc.caps, code, stderr, stdout)
		}
		for _, drop := range tc.caps {
			_, stderr, code := withCaps(t, bin, without(tc.caps, drop), tc.args...)
			wantDenied(t, tc.name+" without "+drop, stderr, code, drop)
		}
	}
	// --hold blocks: it is checked in TestFixHold; here only its refusals.
	hold := []string{"CAP_BPF", "CAP_NET_ADMIN"}
	for _, drop := range hold {
		_, stderr, code := withCaps(t, bin, without(hold, drop), "fix", "--cgroup", dir, "--hold")
		wantDenied(t, "fix --cgroup --hold without "+drop, stderr, code, drop)
	}
	_, stderr, code := withCaps(t, bin, nil, "fix", "--remove", "--cgroup", dir)
	wantDenied(t, "fix --remove with nothing", stderr, code, "CAP_BPF")
}

// TestFixHold: the DaemonSet's way. As nobody with only CAP_BPF and
// CAP_NET_ADMIN, kadiag fix --hold keeps the policy while it runs; SIGTERM
// detaches it and kadiag exits 0; after SIGKILL nothing is left either.
func TestFixHold(t *testing.T) {
	l := newSockLab(t, 96)
	testenv.Need(t, "setpriv")
	bin := nobodyKadiag(t)
	dir := bpftest.Cgroup(t)
	holdFor(t, l, bin, dir, syscall.SIGTERM)
	holdFor(t, l, bin, dir, syscall.SIGKILL)
}

func holdFor(t *testing.T, l *sockLab, bin, dir string, sig syscall.Signal) {
	t.Helper()
	set := "-all,+bpf,+net_admin"
	k := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set,
		bin, "fix", "--cgroup", dir, "--hold")
	stdout, err := k.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	k.Stderr = &stderr
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Process.Kill(); k.Wait() })
	attached := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "attached") {
				attached <- all.String()
				return
			}
		}
		attached <- all.String()
	}()
	select {
	case out := <-attached:
		if !strings.Contains(out, "held by this kadiag") {
			t.Fatalf("kadiag fix --hold printed:\n%s\nstderr: %s", out, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kadiag fix --hold did not attach: %s", stderr.String())
	}
	c := l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")
	bpftest.Into(t, c, dir)
	if _, s := startReady(t, c); s[0].Keepalive != 1 || s[0].Idle != 60 {
		t.Errorf("client in the held cgroup: %+v, want keepalive on, idle 60", s[0])
	}
	k.Process.Signal(sig)
	if err := k.Wait(); err != nil && sig == syscall.SIGTERM {
		t.Errorf("kadiag fix --hold after SIGTERM: %v, stderr %s", err, stderr.String())
	}
	c = l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")
	bpftest.Into(t, c, dir)
	if _, s := startReady(t, c); s[0].Keepalive != 0 {
		t.Errorf("after kadiag got %v the policy still applies: %+v", sig, s[0])
	}
}
