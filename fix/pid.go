package fix

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

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
		return fmt.Errorf("pid %d: %s: %w: needs CAP_SYS_PTRACE or the process's own user (or --via bpf with CAP_BPF and CAP_PERFMON)", pid, what, ErrPermission)
	}
	return fmt.Errorf("pid %d: %s: %w", pid, what, err)
}

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
	var ws []watched
	defer func() {
		for _, w := range ws {
			unix.Close(w.fd)
		}
	}()
	for i, f := range fds {
		nfd, err := sockfd.Dup(pfd, f.fd, f.inode)
		switch {
		case err == nil:
		case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF) && exited(pfd):
			// A process that is exiting has no descriptor table any more:
			// pidfd_getfd answers EBADF, as for a closed descriptor.
			if len(r.Sockets) == 0 && i == 0 {
				return fmt.Errorf("pid %d: %w (it exited before the fix)", pid, ErrNoProcess)
			}
			r.notef("pid %d exited during the fix after %d of %d sockets; the rest were not touched", pid, i, len(fds))
			return nil
		case errors.Is(err, sockfd.ErrReused):
			r.Sockets = append(r.Sockets, Socket{FD: f.fd, Inode: f.inode, Action: Gone, Plan: []string{}, Reason: err.Error()})
			continue
		case errors.Is(err, unix.EBADF):
			continue // closed since the listing: no longer the process's
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return procErr(pid, "duplicate its sockets (pidfd_getfd)", err)
		default:
			return fmt.Errorf("pid %d: pidfd_getfd fd %d: %w", pid, f.fd, err)
		}
		s, ok := fixOne(nfd, f, o)
		if !ok {
			unix.Close(nfd)
			continue
		}
		r.Sockets = append(r.Sockets, s)
		if o.Watch > 0 && (s.Action == Changed || s.Action == Unchanged) {
			ws = append(ws, watched{fd: nfd, idx: len(r.Sockets) - 1})
		} else {
			unix.Close(nfd)
		}
		if testHookAfterSocket != nil {
			testHookAfterSocket(i)
		}
	}
	if o.Watch > 0 && !o.DryRun {
		r.WatchS = o.Watch.Seconds()
		watch(r, ws, o.Watch)
	}
	return nil
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
	dom, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, err3 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err1 != nil || err2 != nil || err3 != nil || typ != unix.SOCK_STREAM ||
		(dom != unix.AF_INET && dom != unix.AF_INET6) || (proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP) {
		return Socket{}, false
	}
	s := Socket{FD: f.fd, Inode: f.inode, Protocol: "tcp", Family: "inet", Plan: []string{}, Local: "*", Remote: "*"}
	mptcp := proto == unix.IPPROTO_MPTCP
	if mptcp {
		s.Protocol = "mptcp"
	}
	if dom == unix.AF_INET6 {
		s.Family = "inet6"
	}
	s.Cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	s.State = socketState(fd)
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Local = sockaddr(sa)
	}
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
	after, err := readOptions(fd)
	if err != nil {
		errs = append(errs, "read back: "+err.Error())
	}
	s.After = after
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
		return stateName(ti.State)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && v != 0 {
		return "LISTEN"
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return "ESTABLISHED"
	}
	return "CLOSE"
}
