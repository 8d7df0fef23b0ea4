package fix

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/sockfd"
	"golang.org/x/sys/unix"
)

// LiveOptions tune a fix of a running process's sockets.
type LiveOptions struct {
	Settings
	// AllSockets fixes every TCP socket, not only established and listening
	// ones whose peer is beyond this host.
	AllSockets bool
	// DryRun reads and plans, and writes nothing.
	DryRun bool
	// Via chooses pidfd_getfd (default) or the BPF TCP iterator.
	Via Via
	// Watch observes the fixed sockets for this long after the change.
	Watch time.Duration
}

// testHookAfterSocket lets a test end the process after the i-th socket.
var testHookAfterSocket func(i int)

// PID fixes the TCP and MPTCP sockets process pid holds now.
func PID(pid int, o LiveOptions) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w (pids are positive)", pid, ErrNoProcess)
	}
	if o.Via == "" {
		o.Via = ViaPidfd
	}
	r := newReport("pid", o.Settings)
	r.DryRun, r.Via = o.DryRun, o.Via
	p, err := process(pid)
	if err != nil {
		return nil, err
	}
	r.Process = p
	if o.Via == ViaBPF {
		err = viaBPF(r, pid, o)
	} else {
		err = viaPidfd(r, pid, o)
	}
	if err != nil {
		return nil, err
	}
	r.count()
	return r, nil
}

func process(pid int) (*Process, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return nil, procErr(pid, "read comm", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st); err != nil {
		return nil, procErr(pid, "read its network namespace", err)
	}
	return &Process{PID: pid, Comm: strings.TrimSpace(string(b)), Netns: fmt.Sprintf("net:[%d]", st.Ino)}, nil
}

func procErr(pid int, what string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		// Another user's /proc/PID/fd is mode 0500 (a DAC check); its
		// links and pidfd_getfd are ptrace checks.
		if cerr := bpf.Missing(fmt.Sprintf("pid %d: %s: %v", pid, what, ErrPermission), unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH); cerr != nil {
			return permissionError{cerr}
		}
		return fmt.Errorf("pid %d: %s: %w (ptrace refused: Yama ptrace_scope or a security module? --via bpf needs no ptrace)", pid, what, ErrPermission)
	}
	return fmt.Errorf("pid %d: %s: %w", pid, what, err)
}

// permissionError is a refusal explained by missing capabilities: it is
// both ErrPermission and, unwrapped, a *bpf.CapabilityError.
type permissionError struct{ error }

func (e permissionError) Is(target error) bool { return target == ErrPermission }
func (e permissionError) Unwrap() error        { return e.error }

// fdSocket is a descriptor of the process that refers to a socket.
type fdSocket struct {
	fd    int
	inode uint64
}

// socketFDs lists pid's socket descriptors, by number.
func socketFDs(pid int) ([]fdSocket, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, procErr(pid, "list descriptors", err)
	}
	out := make([]fdSocket, 0, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed since the listing
		}
		if !strings.HasPrefix(l, "socket:[") || !strings.HasSuffix(l, "]") {
			continue
		}
		ino, err := strconv.ParseUint(l[len("socket:["):len(l)-1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, fdSocket{fd, ino})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fd < out[j].fd })
	return out, nil
}

// viaPidfd duplicates every socket, re-checks its identity on the copy,
// and sets the options on the copy (the same open file as the process's).
// A big process is split over every CPU: each socket is independent.
func viaPidfd(r *Report, pid int, o LiveOptions) error {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return procErr(pid, "pidfd_open", err)
	}
	defer unix.Close(pfd)
	fds, err := socketFDs(pid)
	if err != nil {
		return err
	}
	slots := make([]slot, len(fds))
	var run runState
	run.exitAt.Store(int64(len(fds)))
	work := func(i int) {
		slots[i] = fixSlot(pfd, pid, i, fds[i], o, &run)
		if testHookAfterSocket != nil {
			testHookAfterSocket(i)
		}
	}
	if len(fds) < parallelFrom {
		for i := range fds {
			if run.stop.Load() {
				break
			}
			work(i)
		}
	} else {
		parallel(len(fds), &run, work)
	}
	var ws []watched
	defer func() {
		for _, w := range ws {
			unix.Close(w.fd)
		}
	}()
	exitAt := int(run.exitAt.Load())
	for i, sl := range slots {
		if sl.nfd >= 0 && (run.err != nil || i >= exitAt) {
			unix.Close(sl.nfd)
			continue
		}
		if !sl.ok || i >= exitAt {
			continue
		}
		r.Sockets = append(r.Sockets, sl.s)
		if sl.nfd >= 0 {
			ws = append(ws, watched{fd: sl.nfd, idx: len(r.Sockets) - 1})
		}
	}
	if run.err != nil {
		return run.err
	}
	if exitAt < len(fds) {
		if len(r.Sockets) == 0 {
			return fmt.Errorf("pid %d: %w (it exited before the fix)", pid, ErrNoProcess)
		}
		r.notef("pid %d exited during the fix after %d of %d sockets; the rest were not touched", pid, exitAt, len(fds))
		return nil
	}
	if o.Watch > 0 && !o.DryRun {
		r.WatchS = o.Watch.Seconds()
		watch(r, ws, o.Watch)
	}
	return nil
}

// parallelFrom is the number of sockets from which a fix is spread over
// every CPU; below it the sockets are fixed in descriptor order.
const parallelFrom = 256

// slot is the outcome for one listed descriptor.
type slot struct {
	s   Socket
	ok  bool // s holds a TCP or MPTCP socket (or one found reused)
	nfd int  // the duplicate, kept open for --watch; -1 when closed
}

// runState is shared by the workers of one fix.
type runState struct {
	stop   atomic.Bool
	exitAt atomic.Int64 // lowest index at which the process was seen gone
	mu     sync.Mutex
	err    error // the first error that stops the fix
}

func (rs *runState) fail(err error) {
	rs.mu.Lock()
	if rs.err == nil {
		rs.err = err
	}
	rs.mu.Unlock()
	rs.stop.Store(true)
}

func (rs *runState) exited(i int) {
	for {
		cur := rs.exitAt.Load()
		if int64(i) >= cur || rs.exitAt.CompareAndSwap(cur, int64(i)) {
			break
		}
	}
	rs.stop.Store(true)
}

func parallel(n int, rs *runState, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+parallelFrom-1)/parallelFrom)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(parallelFrom)) - parallelFrom
				if lo >= n || rs.stop.Load() {
					return
				}
				for i := lo; i < min(lo+parallelFrom, n) && !rs.stop.Load(); i++ {
					f(i)
				}
			}
		}()
	}
	wg.Wait()
}

// fixSlot duplicates descriptor f and fixes it.
func fixSlot(pfd, pid, i int, f fdSocket, o LiveOptions, rs *runState) slot {
	out := slot{nfd: -1}
	nfd, err := sockfd.Dup(pfd, f.fd, f.inode)
	switch {
	case err == nil:
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF) && exited(pfd):
		// A process that is exiting has no descriptor table any more:
		// pidfd_getfd answers EBADF, as for a closed descriptor.
		rs.exited(i)
		return out
	case errors.Is(err, sockfd.ErrReused):
		out.s, out.ok = Socket{FD: f.fd, Inode: f.inode, Action: Gone, Plan: []string{}, Reason: err.Error()}, true
		return out
	case errors.Is(err, unix.EBADF):
		return out // closed since the listing: no longer the process's
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		rs.fail(procErr(pid, "duplicate its sockets (pidfd_getfd)", err))
		return out
	default:
		rs.fail(fmt.Errorf("pid %d: pidfd_getfd fd %d: %w", pid, f.fd, err))
		return out
	}
	out.s, out.ok = fixOne(nfd, f, o)
	if out.ok && o.Watch > 0 && (out.s.Action == Changed || out.s.Action == Unchanged) {
		out.nfd = nfd
	} else {
		unix.Close(nfd)
	}
	return out
}

// exited reports whether the process behind pidfd has exited: its pidfd
// polls readable then.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// fixOne reads and, unless dry, fixes one duplicated socket. It returns
// false for sockets that are not TCP or MPTCP.
func fixOne(fd int, f fdSocket, o LiveOptions) (Socket, bool) {
	// A process may hold thousands of sockets: as few system calls as
	// tell a TCP or MPTCP stream socket of IPv4 or IPv6 from the rest.
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || (proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP) {
		return Socket{}, false
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return Socket{}, false // a raw socket of protocol TCP
	}
	s := Socket{FD: f.fd, Inode: f.inode, Protocol: "tcp", Family: "inet", Plan: []string{}, Local: "*", Remote: "*"}
	switch sa, err := unix.Getsockname(fd); {
	case err != nil:
		return Socket{}, false
	case isInet6(sa):
		s.Family = "inet6"
		s.Local = sockaddr(sa)
	default:
		if _, ok := sa.(*unix.SockaddrInet4); !ok {
			return Socket{}, false
		}
		s.Local = sockaddr(sa)
	}
	mptcp := proto == unix.IPPROTO_MPTCP
	if mptcp {
		s.Protocol = "mptcp"
	}
	s.Cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	s.State = socketState(fd)
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Remote = sockaddr(sa)
	}
	before, err := readOptions(fd)
	if err != nil {
		s.Action, s.Error = Failed, "read options: "+err.Error()
		return s, true
	}
	s.Before, s.After = before, before
	if ok, why := target(s.State, s.Local, s.Remote, o.AllSockets); !ok {
		s.Action, s.Reason = Skipped, why
		return s, true
	}
	todo := plan(before, o.Settings, mptcp)
	for _, opt := range todo {
		s.Plan = append(s.Plan, opt.name)
	}
	if mptcp && o.UserTimeout > 0 {
		s.Reason = "MPTCP has no TCP_USER_TIMEOUT: left unset"
	}
	switch {
	case len(todo) == 0:
		s.Action = Unchanged
		if s.Reason == "" {
			s.Reason = "already keeps these settings or shorter ones"
		}
		return s, true
	case o.DryRun:
		s.Action = WouldChange
		return s, true
	}
	var errs []string
	for _, opt := range todo {
		if err := unix.SetsockoptInt(fd, opt.level, opt.opt, opt.target(o.Settings)); err != nil {
			errs = append(errs, opt.name+": "+err.Error())
		}
	}
	// Read back what was written; the rest was read just before and not
	// touched.
	for _, opt := range todo {
		v, err := unix.GetsockoptInt(fd, opt.level, opt.opt)
		if err != nil {
			errs = append(errs, "read back "+opt.name+": "+err.Error())
			continue
		}
		opt.set(&s.After, v)
	}
	s.Action = Changed
	if len(errs) > 0 {
		s.Action, s.Error = Failed, strings.Join(errs, "; ")
	}
	return s, true
}

// socketState reads the TCP state from tcp_info; MPTCP sockets, whose
// tcp_info may be unavailable, are told apart by SO_ACCEPTCONN and a peer.
func socketState(fd int) string {
	if ti, err := unix.GetsockoptTCPInfo(fd, unix.SOL_TCP, unix.TCP_INFO); err == nil && ti.State != 0 {
		return inspect.StateName(ti.State)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && v != 0 {
		return "LISTEN"
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return "ESTABLISHED"
	}
	return "CLOSE"
}
