package simulate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/fix"
	"github.com/kadiag/kadiag/internal/bpf"
)

// The kadiag fix scenarios: the bundled client with keepalive off, fixed
// without a restart. They run on request (--scenario): kadiag fix needs
// CAP_SYS_PTRACE or CAP_BPF beyond the lab's privileges.
const (
	// FixLive: kadiag fix --pid before the middlebox forgets the flow: the
	// probes keep it alive, the client gets its reply.
	FixLive = "fix-live"
	// FixLiveLate: kadiag fix --pid after the middlebox forgot: the first
	// probe finds the flow gone and the client fails fast instead of hanging
	// until its timeout.
	FixLiveLate = "fix-live-late"
	// FixCgroup: the client runs in a cgroup with kadiag fix's programs
	// attached: its connection gets keepalive from the kernel (the same
	// static client outside it is the none scenario: it hangs).
	FixCgroup = "fix-cgroup"
)

// fixSettings are the scenario's keepalive timings, in kadiag fix's terms.
func fixSettings(t Timings) fix.Settings {
	return fix.Settings{Idle: wholeSeconds(t.KeepIdle), Interval: wholeSeconds(t.KeepIntvl), Count: t.KeepCnt}
}

// beforeForgetting is halfway to the first hop's timeout; afterForgetting
// a second after it.
func beforeForgetting(t Timings) time.Duration { return t.Idle / 2 }
func afterForgetting(t Timings) time.Duration  { return t.Idle + time.Second }

// fixLive runs kadiag fix --pid on the running client.
func fixLive(_ context.Context, s *Stage) error {
	r, err := fix.PID(s.Pid, fix.LiveOptions{Settings: fixSettings(s.Timings)})
	if err != nil {
		return fmt.Errorf("kadiag fix --pid %d: %w", s.Pid, err)
	}
	if r.Summary.Changed == 0 {
		return fmt.Errorf("kadiag fix --pid %d changed none of its %d sockets", s.Pid, r.Summary.Sockets)
	}
	return nil
}

var fixCgroupSeq atomic.Int64

// fixCgroup starts the client in a cgroup of its own with kadiag fix's
// policy held on it, and removes both at teardown.
func fixCgroup(_ context.Context, s *Stage) (func(), error) {
	root, ok := bpf.CgroupMount()
	if !ok {
		return nil, fmt.Errorf("%s: %w", FixCgroup, fix.ErrNoCgroup2)
	}
	dir := filepath.Join(root, "kadiag-simulate-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(fixCgroupSeq.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: create cgroup: %w", FixCgroup, err)
	}
	removeDir := func() {
		// The client's group is killed at teardown; its cgroup empties
		// a moment later.
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 100; i++ {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_, held, err := fix.Cgroup(dir, fixSettings(s.Timings), true, false)
	if err != nil {
		removeDir()
		return nil, fmt.Errorf("%s: %w", FixCgroup, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		held.Release()
		removeDir()
		return nil, fmt.Errorf("%s: %w", FixCgroup, err)
	}
	if s.Cmd.SysProcAttr == nil {
		s.Cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	s.Cmd.SysProcAttr.UseCgroupFD, s.Cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
	return func() {
		f.Close()
		held.Release()
		removeDir()
	}, nil
}
