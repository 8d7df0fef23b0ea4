package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildKadiag builds the real binary once per test run, so exit codes and
// stderr are checked as a user and a CI pipeline see them.
func buildKadiag(t *testing.T) string {
	t.Helper()
	kadiagOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kadiag-bin-")
		if err != nil {
			kadiagErr = err
			return
		}
		kadiagBin = filepath.Join(dir, "kadiag")
		args := []string{"build", "-o", kadiagBin}
		if cov := os.Getenv("KADIAG_GOCOVERDIR"); cov != "" {
			// make test: the binary's coverage counts too (every command
			// is tested through it); each run writes its counters there.
			args = append(args, "-cover", "-covermode=atomic", "-coverpkg=github.com/kadiag/kadiag/...")
			os.Setenv("GOCOVERDIR", cov)
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			kadiagErr = err
			kadiagBin = string(out)
		}
	})
	if kadiagErr != nil {
		t.Fatalf("go build: %v\n%s", kadiagErr, kadiagBin)
	}
	return kadiagBin
}

// runKadiag runs the binary and returns stdout, stderr and the exit code.
func runKadiag(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runAs(t, exec.Command(buildKadiag(t), args...))
}

// runAs runs cmd (kadiag, or a wrapper such as setpriv around it) and
// returns stdout, stderr and the exit code.
func runAs(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := exitCode(err)
	if code < 0 {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestRootErrors(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"--version"}, 0, ""},
		{[]string{"--help"}, 0, ""},
		{[]string{"--no-such-flag"}, 2, "unknown flag"},
		{[]string{"-o", "yaml", "completion", "bash"}, 2, "unknown output format"},
		{[]string{"no-such-command"}, 2, "unknown command"},
	}
	for _, tt := range tests {
		stdout, stderr, code := runKadiag(t, tt.args...)
		if code != tt.code {
			t.Errorf("kadiag %v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
		if tt.code == 2 {
			if !strings.Contains(stderr, tt.contains) {
				t.Errorf("kadiag %v: stderr %q lacks %q", tt.args, stderr, tt.contains)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("kadiag %v: error is %d lines, want one: %q", tt.args, n+1, stderr)
			}
		} else if stdout == "" {
			t.Errorf("kadiag %v printed nothing", tt.args)
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		stdout, stderr, code := runKadiag(t, "completion", sh)
		if code != 0 || !strings.Contains(stdout, "kadiag") {
			t.Errorf("completion %s: exit %d, stderr %q", sh, code, stderr)
		}
	}
}
