package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/path"
)

// startPathServe runs `kadiag path serve` on a loopback port and returns
// its address and its log lines.
func startPathServe(t *testing.T, args ...string) (string, *exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(buildKadiag(t), append([]string{"path", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "kadiag path serve: listening on ") {
		t.Fatalf("path serve: %q", sc.Text())
	}
	addr := strings.TrimPrefix(sc.Text(), "kadiag path serve: listening on ")
	go func() {
		defer close(lines)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return addr, cmd, lines
}

// TestPathCommand: the counterpart and the measurement as processes over
// loopback (which never forgets a flow): JSON valid against its schema,
// --expect-at-least passing, JUnit readable, a wrong token refused in one
// line, one log line per measurement, SIGTERM ending the counterpart.
func TestPathCommand(t *testing.T) {
	addr, serve, logs := startPathServe(t, "--token", "s3cret")
	dir := t.TempDir()
	xml := filepath.Join(dir, "path.xml")
	stdout, stderr, code := runKadiag(t, "path", addr, "--token", "s3cret", "--min", "1s", "--max", "3s", "--expect-at-least", "2s", "-o", "json", "--report", xml)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	validateJSON(t, "kadiag path", stdout)
	var res path.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Counterpart || !res.Complete || res.Directions.ToClient == nil || res.Directions.ToServer == nil ||
		res.Directions.ToClient.IdleTimeoutS != nil || *res.Directions.ToServer.BracketS[0] < 2.9 {
		t.Errorf("loopback keeps every flow up to --max: %s", stdout)
	}
	b, _ := os.ReadFile(xml)
	if seen := validateJUnit(t, "kadiag path", string(b)); seen.Tests != 2 || seen.Failures != 0 {
		t.Errorf("JUnit: %+v", seen)
	}
	select {
	case l := <-logs:
		if !strings.Contains(l, "127.0.0.1: measurement of") {
			t.Errorf("log line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Error("no log line for the measurement")
	}

	_, stderr, code = runKadiag(t, "path", addr, "--token", "wrong", "--min", "1s", "--max", "3s")
	if code != 2 || !strings.Contains(stderr, "refused the token") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("wrong token: exit %d, %q", code, stderr)
	}
	stdout, _, code = runKadiag(t, "path", addr, "--token", "s3cret", "--min", "1s", "--max", "3s")
	if code != 0 || !strings.Contains(stdout, "no expiry up to --max") || !strings.Contains(stdout, "DIRECTION") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}

	// A measured result is a --max-idle.
	stdout, stderr, code = runKadiag(t, "sockets", "--pid", strconv.Itoa(os.Getpid()), "--max-idle", "@../../middlebox/testdata/path/measured.json", "-o", "json")
	if code == 2 || !strings.Contains(stdout, `"max_idle_s":350,`) {
		t.Errorf("sockets --max-idle @path.json: exit %d %s\n%s", code, stderr, stdout)
	}

	serve.Process.Signal(syscall.SIGTERM)
	done := make(chan error)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("path serve after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("path serve did not end on SIGTERM")
	}
}

// TestPathInterrupt: Ctrl-C reports what is known, marked incomplete.
func TestPathInterrupt(t *testing.T) {
	addr, _, _ := startPathServe(t)
	cmd := exec.Command(buildKadiag(t), "path", addr, "--min", "1s", "--max", "60s", "-o", "json")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	code := exitCode(cmd.Wait())
	validateJSON(t, "kadiag path interrupted", stdout.String())
	var res path.Result
	json.Unmarshal([]byte(stdout.String()), &res)
	if code != 2 || res.Complete || !strings.Contains(strings.Join(res.Summary, "\n"), "not yet bracketed") || res.AtLeast() < 1 {
		t.Errorf("interrupted: exit %d, stderr %q, %+v", code, stderr.String(), res)
	}
	if !strings.Contains(stderr.String(), "interrupted after") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// TestPathPlainServer: no counterpart, a Python server that closes idle
// connections after 2 s: its own limit fails --expect-at-least 5s (exit 1).
func TestPathPlainServer(t *testing.T) {
	port := freePort(t)
	testenv.StartReady(t, exec.Command(python3(t), "../../path/testdata/idle_server.py", "127.0.0.1", strconv.Itoa(port), "2"))
	stdout, stderr, code := runKadiag(t, "path", "127.0.0.1:"+strconv.Itoa(port), "--min", "1s", "--max", "10s", "--expect-at-least", "5s", "-o", "junit")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s\n%s", code, stderr, stdout)
	}
	if seen := validateJUnit(t, "kadiag path plain", stdout); seen.Failures != 1 {
		t.Errorf("JUnit %+v\n%s", seen, stdout)
	}
	if !strings.Contains(stdout, "closes idle connections after 2.") {
		t.Errorf("the server's idle close is not reported:\n%s", stdout)
	}
}

// startDocCounterpart runs the counterpart docs/path.md measures against
// ($COUNTERPART): `kadiag path serve` on a free loopback port (the docs
// show 127.0.0.1:7350; test runs side by side must not share a port) with
// the token s3cret.
func startDocCounterpart(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "path", "serve", "--listen", "127.0.0.1:0", "--token", "s3cret")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "kadiag path serve: listening on ") {
		t.Fatalf("kadiag path serve for the docs: %q", sc.Text())
	}
	addr := strings.TrimPrefix(sc.Text(), "kadiag path serve: listening on ")
	go func() {
		for sc.Scan() {
		}
	}()
	return addr
}

// TestPathUnprivileged: the measurement needs no capability at all
// (docs/privileges.md): as nobody with none, against a counterpart.
func TestPathUnprivileged(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv")
	addr, _, _ := startPathServe(t)
	stdout, stderr, code := withCaps(t, buildKadiag(t), nil, "path", addr, "--min", "1s", "--max", "2s", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"counterpart": true`) {
		t.Errorf("as nobody without capabilities: exit %d %s\n%s", code, stderr, stdout)
	}
}
