package testenv

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// StartReady starts cmd and waits until it prints a line "ready" on its
// stdout, which the test programs do once their sockets are set up. It
// returns the lines printed before "ready" (the programs describe their
// sockets there). The program keeps running, with its stdin open (many hold
// their sockets until stdin closes), until the test ends.
func StartReady(t testing.TB, cmd *exec.Cmd) []string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var before []string
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait() // stderr is complete once it returns
				t.Fatalf("%v exited before ready: %s", cmd.Args, stderr.String())
			}
			if l == "ready" {
				// Keep reading, so the program never blocks on a full pipe.
				go func() {
					for range lines {
					}
				}()
				return before
			}
			before = append(before, l)
		case <-timeout:
			t.Fatalf("%v: not ready after 60s: %s", cmd.Args, stderr.String())
		}
	}
}

// WaitUntil polls cond every 50 ms for up to d and reports whether it came
// true; a last call after d decides, so a slow machine's last chance counts.
func WaitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
