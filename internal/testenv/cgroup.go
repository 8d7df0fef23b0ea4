package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// cgroupRoots are where a test can make cgroups: the cgroup v2 hierarchy
// (unified, or hybrid under unified/) first, then v1's pids controller.
var cgroupRoots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"}

// MoveToFakePod puts a process into a cgroup laid out as kubelet's cgroupfs
// driver does (kubepods/burstable/pod<uid>/<container id>), in the first
// hierarchy that takes it, and reports whether one did. The test's end
// kills the process and removes the cgroups.
func MoveToFakePod(t testing.TB, pid int, pod, id string) bool {
	t.Helper()
	for _, root := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		base := filepath.Join(root, fmt.Sprintf("kubepods-kadiag-test-%d", os.Getpid()))
		dir := filepath.Join(base, "burstable", "pod"+pod, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			continue
		}
		cleanup := func() {
			// A cgroup with a process in it cannot be removed.
			syscall.Kill(pid, syscall.SIGKILL)
			for d := dir; len(d) >= len(base); d = filepath.Dir(d) {
				for i := 0; i < 100; i++ {
					if err := os.Remove(d); err == nil || os.IsNotExist(err) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			cleanup()
			continue
		}
		t.Cleanup(cleanup)
		return true
	}
	t.Logf("no writable cgroup hierarchy (%v): pod labels not checked", cgroupRoots)
	return false
}
