package exporter

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

func itoa(i int) string { return strconv.Itoa(i) }

// inFakePod starts a sleeping process inside a cgroup v1 "pids" hierarchy
// laid out as kubelet's cgroupfs driver does
// (kubepods/burstable/pod<uid>/<container id>). The cleanup kills it and
// removes the cgroups.
func inFakePod(t *testing.T, pod, id string) (int, func()) {
	t.Helper()
	testenv.Privileged(t)
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		testenv.SkipOrFail(t, "no cgroup v1 pids hierarchy at %s to place a process in", root)
	}
	base := filepath.Join(root, "kubepods-kadiag-test-"+itoa(os.Getpid()))
	dir := filepath.Join(base, "burstable", "pod"+pod, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(itoa(cmd.Process.Pid)), 0); err != nil {
		cmd.Process.Kill()
		t.Fatalf("move into cgroup: %v", err)
	}
	return cmd.Process.Pid, func() {
		cmd.Process.Kill()
		cmd.Wait()
		for d := dir; len(d) >= len(base); d = filepath.Dir(d) {
			os.Remove(d)
		}
	}
}
