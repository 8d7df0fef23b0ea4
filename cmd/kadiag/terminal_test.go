package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// drain collects what arrives on the master side until the process ends.
func drain(m *os.File) <-chan string {
	ch := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			m.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := m.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		ch <- b.String()
	}()
	return ch
}

// TestTableColourOnATerminal: the real binary colours verdicts when stdout
// is a terminal, and not with NO_COLOR or in a pipe.
func TestTableColourOnATerminal(t *testing.T) {
	for _, noColor := range []string{"", "1"} {
		m, s := testenv.OpenPTY(t)
		out := drain(m)
		cmd := exec.Command(buildKadiag(t), "capture", "--read", "../../testdata/capture/eth.pcap")
		cmd.Stdout, cmd.Stderr = s, s
		cmd.Env = append(os.Environ(), "TERM=xterm", "NO_COLOR="+noColor)
		err := cmd.Run()
		s.Close()
		got := <-out
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("capture: %v\n%s", err, got)
		}
		coloured := strings.Contains(got, "\x1b[31mat-risk\x1b[0m") && strings.Contains(got, "\x1b[32mok\x1b[0m")
		if coloured != (noColor == "") {
			t.Errorf("NO_COLOR=%q: coloured %v:\n%q", noColor, coloured, got)
		}
	}
	stdout, _, _ := runKadiag(t, "capture", "--read", "../../testdata/capture/eth.pcap")
	if strings.Contains(stdout, "\x1b[") {
		t.Errorf("colour in a pipe")
	}
}

// TestLiveCaptureProgress: a live capture draws its progress line on a
// terminal's stderr, clears it before the report, and draws nothing when
// stderr is a pipe.
func TestLiveCaptureProgress(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NewNetns(t)
	m, s := testenv.OpenPTY(t)
	out := drain(m)
	cmd := exec.Command(buildKadiag(t), "capture", "--netns", ns.Path, "--duration", "2s")
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, s
	err := cmd.Run()
	s.Close()
	got := <-out
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, got)
	}
	for _, want := range []string{"\r\x1b[K0:00 / 0:02 [", "next: capturing", "0:01 / 0:02"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress lacks %q: %q", want, got)
		}
	}
	if !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("line not cleared at the end: %q", got)
	}
	if strings.Contains(stdout.String(), "\x1b[") || !strings.Contains(stdout.String(), "0 flows") {
		t.Errorf("stdout: %q", stdout.String())
	}
	_, stderr, code := runKadiag(t, "capture", "--netns", ns.Path, "--duration", "1s")
	if code != 0 || stderr != "" {
		t.Errorf("piped stderr: exit %d, %q", code, stderr)
	}
}
