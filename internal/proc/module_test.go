package proc_test

import (
	"errors"
	"os/exec"
	"testing"

	"github.com/kadiag/kadiag/doctor"
	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/proc"
	"github.com/kadiag/kadiag/preload"
)

// TestOneErrNoProcess: every package answers a pid that does not exist with
// the one ErrNoProcess, and names the pid in a *PIDError, so callers use
// errors.Is and errors.As instead of reading text (issue 12 item 10).
func TestOneErrNoProcess(t *testing.T) {
	if inspect.ErrNoProcess != proc.ErrNoProcess || preload.ErrNoProcess != proc.ErrNoProcess || doctor.ErrNoProcess != proc.ErrNoProcess {
		t.Fatal("the exported ErrNoProcess names are different values")
	}
	// A pid that existed and is gone: a reaped child's.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("run true: %v", err)
	}
	pid := cmd.Process.Pid
	_, errInspect := inspect.ScanPIDs([]int{pid}, inspect.Options{})
	_, errPreload := preload.Check(pid)
	_, errDoctor := doctor.Diagnose(pid, doctor.Options{})
	for name, err := range map[string]error{"inspect": errInspect, "preload": errPreload, "doctor": errDoctor} {
		if !errors.Is(err, proc.ErrNoProcess) {
			t.Errorf("%s: %v, want ErrNoProcess", name, err)
		}
		if got, ok := proc.FailedPID(err); !ok || got != pid {
			t.Errorf("%s: FailedPID(%v) = %d, %v; want %d", name, err, got, ok, pid)
		}
	}
}
