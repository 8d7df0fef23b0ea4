package simulate

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// startIn starts cmd inside ns. A child inherits the namespace of the thread
// that forks it, so the fork happens on a thread switched into ns. The child
// gets its own process group (killed as a whole at the deadline) and
// SIGKILL when kadiag dies, so nothing outlives a killed kadiag.
func startIn(ns netns.NsHandle, cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return inNetns(ns, cmd.Start)
}

// killGroup kills cmd's whole process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
}

// memFile puts embedded bytes (a program, a library) into an anonymous
// memory file. Its path, memPath, can be executed or preloaded and needs
// nothing on disk, so a killed kadiag leaves no file behind either.
func memFile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd for %s: %w", name, err)
	}
	return f, nil
}

// memPath is the path under which other processes open f while kadiag runs.
func memPath(f *os.File) string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
}
