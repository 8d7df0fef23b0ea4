package preload

import (
	"time"

	"github.com/kadiag/kadiag/inspect"
)

// Socket is the keepalive state of one TCP socket of a process, as the
// inspect package (kadiag sockets) reads it from outside.
type Socket struct {
	FD          int
	Family      string // inet or inet6
	State       string // as ss names it: ESTABLISHED, LISTEN, ...
	Listening   bool
	Local       string
	Remote      string
	Keepalive   bool
	Idle        time.Duration
	Interval    time.Duration
	Count       int
	UserTimeout time.Duration
	// NoUserTimeout: the socket has no TCP_USER_TIMEOUT (MPTCP), so a
	// configured user timeout cannot apply to it.
	NoUserTimeout bool
	// Source is "bpf" or "getsockopt" for exact values (see
	// inspect.Source), or "inferred" from the kernel's keepalive timer.
	Source string
}

// TCPSockets returns the IPv4/IPv6 TCP sockets of pid with their keepalive
// options, read by the inspect package: inet_diag in the process's netns and
// getsockopt on duplicates of its descriptors (pidfd_getfd).
func TCPSockets(pid int) ([]Socket, error) {
	p, err := inspect.PID(pid, inspect.Options{})
	if err != nil {
		return nil, err
	}
	return SocketsOf(p), nil
}

// SocketsOf converts sockets the inspect package already read, so a caller
// that scanned a process once (doctor) judges the library on that same scan.
func SocketsOf(p inspect.Process) []Socket {
	out := make([]Socket, 0, len(p.Sockets))
	for _, s := range p.Sockets {
		k := s.Keepalive
		out = append(out, Socket{
			FD:            s.FD,
			Family:        s.Family,
			State:         s.State,
			Listening:     s.State == "LISTEN",
			Local:         s.Local,
			Remote:        s.Remote,
			Keepalive:     k.Enabled,
			Idle:          time.Duration(k.IdleS) * time.Second,
			Interval:      time.Duration(k.IntervalS) * time.Second,
			Count:         k.Count,
			UserTimeout:   time.Duration(k.UserTimeoutMs) * time.Millisecond,
			NoUserTimeout: k.UserTimeoutUnsupported,
			Source:        string(k.Source),
		})
	}
	return out
}
