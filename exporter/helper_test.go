package exporter

import (
	"os/exec"
	"strconv"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

func itoa(i int) string { return strconv.Itoa(i) }

// inFakePod starts a sleeping process inside a cgroup laid out as kubelet's
// cgroupfs driver does; the test's end stops it and removes the cgroups.
func inFakePod(t *testing.T, pod, id string) (int, func()) {
	t.Helper()
	testenv.Privileged(t)
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !testenv.MoveToFakePod(t, cmd.Process.Pid, pod, id) {
		testenv.SkipOrFail(t, "no writable cgroup hierarchy to place a process in")
	}
	return cmd.Process.Pid, func() {}
}
