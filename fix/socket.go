package fix

import (
	"net/netip"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/bpf"
	"golang.org/x/sys/unix"
)

// option is one keepalive option in the order a fix sets them: SO_KEEPALIVE
// first, so that the kernel counts the idle time already elapsed and a
// socket idle past the new idle is probed at once.
type option struct {
	name        string
	level, opt  int
	get         func(*Options) int
	set         func(*Options, int)
	target      func(Settings) int
	keepaliveOn bool // SO_KEEPALIVE: only "on" is enforced
	zeroIsOff   bool // TCP_USER_TIMEOUT: 0 means off and is replaced
}

var options = []option{
	{name: "SO_KEEPALIVE", level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE, keepaliveOn: true,
		get: func(o *Options) int { return b2i(o.Keepalive) }, set: func(o *Options, v int) { o.Keepalive = v != 0 },
		target: func(Settings) int { return 1 }},
	{name: "TCP_KEEPIDLE", level: unix.SOL_TCP, opt: unix.TCP_KEEPIDLE,
		get: func(o *Options) int { return o.IdleS }, set: func(o *Options, v int) { o.IdleS = v },
		target: func(s Settings) int { return int(s.Idle.Seconds()) }},
	{name: "TCP_KEEPINTVL", level: unix.SOL_TCP, opt: unix.TCP_KEEPINTVL,
		get: func(o *Options) int { return o.IntervalS }, set: func(o *Options, v int) { o.IntervalS = v },
		target: func(s Settings) int { return int(s.Interval.Seconds()) }},
	{name: "TCP_KEEPCNT", level: unix.SOL_TCP, opt: unix.TCP_KEEPCNT,
		get: func(o *Options) int { return o.Count }, set: func(o *Options, v int) { o.Count = v },
		target: func(s Settings) int { return s.Count }},
	{name: "TCP_USER_TIMEOUT", level: unix.SOL_TCP, opt: unix.TCP_USER_TIMEOUT, zeroIsOff: true,
		get: func(o *Options) int { return o.UserTimeoutMs }, set: func(o *Options, v int) { o.UserTimeoutMs = v },
		target: func(s Settings) int { return int(s.UserTimeout.Milliseconds()) }},
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// satisfied reports whether value v already keeps the setting: keepalive
// on; a timing positive and no longer than the target. The BPF programs
// apply the same rule (internal/bpf).
func (o option) satisfied(v, target int) bool {
	switch {
	case o.keepaliveOn:
		return v != 0
	case o.zeroIsOff && v == 0:
		return false
	}
	return v > 0 && v <= target
}

// plan returns the options to set on a socket with options before, in order.
func plan(before Options, s Settings, mptcp bool) []option {
	var out []option
	for _, o := range options {
		if o.zeroIsOff && (s.UserTimeout == 0 || mptcp) {
			continue // untouched; MPTCP has no TCP_USER_TIMEOUT
		}
		if !o.satisfied(o.get(&before), o.target(s)) {
			out = append(out, o)
		}
	}
	return out
}

// readOptions reads a socket's keepalive options. MPTCP answers
// TCP_USER_TIMEOUT with an error: it reads as 0.
func readOptions(fd int) (Options, error) {
	var o Options
	for _, opt := range options {
		v, err := unix.GetsockoptInt(fd, opt.level, opt.opt)
		if err != nil {
			if opt.zeroIsOff {
				continue
			}
			return o, err
		}
		opt.set(&o, v)
	}
	return o, nil
}

func fromBPF(v bpf.Values) Options {
	return Options{Keepalive: v.Keepalive, IdleS: v.IdleS, IntervalS: v.IntervalS, Count: v.Count, UserTimeoutMs: v.UserTimeoutMs}
}

// sockaddr renders a socket address as inspect does ("[fd00::1]:80",
// IPv4-mapped addresses as IPv4).
func sockaddr(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
	}
	return "*"
}

func isInet6(sa unix.Sockaddr) bool {
	_, ok := sa.(*unix.SockaddrInet6)
	return ok
}

// target decides whether a socket is fixed: established and listening
// sockets with a peer beyond this host (accepted sockets inherit from the
// listener); every TCP socket with all.
func target(state, local, remote string, all bool) (bool, string) {
	if all {
		return true, ""
	}
	switch state {
	case "LISTEN":
		return true, ""
	case "ESTABLISHED":
		if inspect.IsLocal(local, remote) {
			return false, "peer on this host, no middlebox in between (--all-sockets includes it)"
		}
		return true, ""
	}
	return false, "state " + state + " (--all-sockets includes it)"
}
