package simulate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// ownNamespaces lists the network namespaces this test process holds (by
// fd) or has a thread in, other than its own.
func ownNamespaces(t *testing.T) []string {
	t.Helper()
	self, _ := os.Readlink("/proc/self/ns/net")
	var out []string
	paths, _ := filepath.Glob("/proc/self/fd/*")
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, p := range append(paths, tasks...) {
		if l, err := os.Readlink(p); err == nil && strings.HasPrefix(l, "net:[") && l != self {
			out = append(out, p+" -> "+l)
		}
	}
	return out
}

// TestRunCancelledAnyMoment cancels Run (what Ctrl-C does) at moments
// spread over a run's life (building the lab, starting the server, the
// command running, tearing down): every time Run returns the cancellation,
// the process holds no lab namespace and no thread of it stays switched,
// the command's processes are gone, and every namespace created on the way
// is released.
func TestRunCancelledAnyMoment(t *testing.T) {
	testenv.Privileged(t)
	before := netnsInodes(t)
	cfg := fast(Config{Command: []string{"sh", "-c", "sleep 3051 & sleep 3052"}, Expect: ExpectOK, Timeout: 20 * time.Second,
		Stdout: os.Stderr, Stderr: os.Stderr})
	for _, after := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond,
		150 * time.Millisecond, 400 * time.Millisecond, time.Second} {
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(after, cancel)
		_, err := Run(ctx, cfg)
		timer.Stop()
		cancel()
		// Also the "interrupted" error wraps the context's (issue 12 item 10).
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after %v: %v, want the cancellation", after, err)
		}
		if own := ownNamespaces(t); len(own) > 0 {
			t.Errorf("cancelled after %v: still held: %v", after, own)
		}
		if !testenv.WaitUntil(5*time.Second, func() bool { return !sleeping("sleep 3051", "sleep 3052") }) {
			t.Errorf("cancelled after %v: the command's processes outlived Run", after)
		}
	}
	// Namespaces nobody holds any more vanish from every process's view.
	if !testenv.WaitUntil(5*time.Second, func() bool {
		for ns := range netnsInodes(t) {
			if !before[ns] && heldBySelf(ns) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("namespaces created by the runs are still held by this process")
	}
}

func heldBySelf(ns string) bool {
	paths, _ := filepath.Glob("/proc/self/fd/*")
	for _, p := range paths {
		if l, _ := os.Readlink(p); l == ns {
			return true
		}
	}
	return false
}

// sleeping reports whether a process whose command line starts with one of
// the markers is running.
func sleeping(markers ...string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		for _, m := range markers {
			if strings.HasPrefix(cmdline, m) {
				if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && !strings.Contains(string(st), ") Z ") {
					return true
				}
			}
		}
	}
	return false
}
