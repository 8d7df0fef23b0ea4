// Package bpftest gives tests of kadiag's BPF programs real cgroup v2
// directories and processes started inside them.
package bpftest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/testenv"
)

var seq atomic.Int64

// Cgroup creates a cgroup v2 directory for one test (under the cgroup2
// mount /proc/self/mountinfo names) and removes it when the test ends,
// after killing what is left in it.
func Cgroup(t testing.TB) string {
	t.Helper()
	testenv.Privileged(t)
	root, ok := bpf.CgroupMount()
	if !ok {
		testenv.SkipOrFail(t, "no cgroup v2 mounted")
	}
	dir := filepath.Join(root, fmt.Sprintf("kadiag-t%d-%d", os.Getpid(), seq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		// cgroup.kill (5.14+) ends anything a failed test left behind.
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.Remove(dir)
			if err == nil || os.IsNotExist(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove cgroup %s: %v", dir, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// Sub creates a child cgroup of dir, removed with the test.
func Sub(t testing.TB, dir, name string) string {
	t.Helper()
	sub := filepath.Join(dir, name)
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(sub, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 250; i++ {
			if err := os.Remove(sub); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return sub
}

// Into makes cmd start inside the cgroup dir (clone3 CLONE_INTO_CGROUP).
func Into(t testing.TB, cmd *exec.Cmd, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
}
