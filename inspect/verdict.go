package inspect

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	kproc "github.com/kadiag/kadiag/internal/proc"

	"golang.org/x/sys/unix"
)

// Kernel TCP states (include/net/tcp_states.h) as ss names them in JSON-safe form.
var stateNames = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
	11: "CLOSING", 12: "NEW_SYN_RECV",
}

// StateName names a kernel TCP state as kadiag's reports do, and an
// unknown one as UNKNOWN(n).
func StateName(state uint8) string {
	if int(state) < len(stateNames) && stateNames[state] != "" {
		return stateNames[state]
	}
	return "UNKNOWN(" + strconv.Itoa(int(state)) + ")"
}

const (
	stateEstablished = 1
	stateListen      = 10
	stateFinWait2    = 5
)

// inet_diag timer kinds (idiag_timer), named as ss prints them.
var timerNames = [...]string{0: "", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}

const timerKeepalive = 2

// newSocket fills a Socket from its inet_diag entry; keepalive values and
// the verdict come later.
func newSocket(fd int, m *diagEntry) Socket {
	src, dst := m.addrs()
	// Both endpoints in one string, one allocation per socket, not two.
	var buf [2 * len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")]byte
	b := netip.AddrPortFrom(src, m.sport).AppendTo(buf[:0])
	n := len(b)
	ends := string(netip.AddrPortFrom(dst, m.dport).AppendTo(b))
	s := Socket{
		Local:          ends[:n],
		Remote:         ends[n:],
		FD:             fd,
		Inode:          uint64(m.inode),
		Family:         "inet",
		Protocol:       "tcp",
		local:          localFlow(src, dst),
		TimerExpiresMs: int64(m.expires),
		TimerRetrans:   int(m.retrans),
		UID:            m.uid,
		RecvQ:          m.rqueue,
		SendQ:          m.wqueue,
	}
	if m.family == unix.AF_INET6 {
		s.Family = "inet6"
	}
	if m.mptcp {
		s.Protocol = "mptcp"
	}
	if int(m.state) < len(stateNames) {
		s.State = stateNames[m.state]
	}
	if int(m.timer) < len(timerNames) {
		s.Timer = timerNames[m.timer]
	} else {
		s.Timer = "unknown"
	}
	if s.Timer == "" {
		s.TimerExpiresMs, s.TimerRetrans = 0, 0
	}
	if m.hasInfo {
		s.LastDataRecvMs = int64(m.lastDataRecv)
		s.LastAckRecvMs = int64(m.lastAckRecv)
	}
	return s
}

// setExact records values read with getsockopt.
func (s *Socket) setExact(o options, m *diagEntry) {
	s.Keepalive = Keepalive{
		Enabled:                o.keepalive,
		IdleS:                  o.idle,
		IntervalS:              o.intvl,
		Count:                  o.cnt,
		UserTimeoutMs:          o.userTimeout,
		UserTimeoutUnsupported: o.noUserTimeout,
		Source:                 Exact,
	}
	// Only MPTCP answers TCP_USER_TIMEOUT with EOPNOTSUPP: a kernel without
	// mptcp_diag still gets the protocol right.
	if o.mptcp || o.noUserTimeout {
		s.Protocol = "mptcp"
	}
	s.setTimer(m)
}

func (s *Socket) setTimer(m *diagEntry) {
	if m.timer == timerKeepalive && m.state != stateFinWait2 {
		s.Keepalive.TimerArmed = true
		s.Keepalive.NextProbeMs = int64(m.expires)
		s.Keepalive.ProbesSent = int(m.retrans)
	}
}

// setInferred estimates the keepalive values from the kernel's timers, for
// callers that may not duplicate the socket. The keepalive timer of an
// established socket is pending exactly when SO_KEEPALIVE is on. It fires
// at most idle after the last receive, and the kernel re-arms it lazily:
// when it fires early (data came since it was armed) it waits only for the
// time still missing. So "time since last receive + time to expiry" is the
// idle gap the flow will have reached when the next probe leaves, and only a
// lower bound of TCP_KEEPIDLE. Interval and count cannot be seen and are
// taken from the namespace.
func (s *Socket) setInferred(m *diagEntry, sys Sysctl) {
	s.Keepalive = Keepalive{Source: Inferred}
	s.setTimer(m)
	switch {
	case m.state == stateListen:
		s.Keepalive.Source = Unknown
		s.Reason = "a listener's options cannot be inferred from kernel timers: " + exactHint()
	case m.state == stateFinWait2:
		// FIN_WAIT2 uses the same kernel timer for its own timeout.
		s.Keepalive.Source = Unknown
		s.Reason = "FIN_WAIT2 shares the keepalive timer; cannot infer"
	case m.timer == timerKeepalive:
		s.Keepalive.Enabled = true
		s.Keepalive.IntervalS = sys.KeepaliveIntvl
		s.Keepalive.Count = sys.KeepaliveProbes
		if m.retrans > 0 {
			s.Keepalive.Source = Unknown
			s.Reason = fmt.Sprintf("keepalive on, %d probes unanswered; idle cannot be inferred while probing", m.retrans)
			return
		}
		since := min(s.LastDataRecvMs, s.LastAckRecvMs)
		s.Keepalive.IdleS = int((since + int64(m.expires) + 500) / 1000)
		s.Keepalive.IdleLowerBound = true
	case m.timer == 0 && m.state != 2 && m.state != 7:
		// Nothing in flight and no timer: keepalive is off.
	default:
		s.Keepalive.Source = Unknown
		s.Reason = fmt.Sprintf("the %s timer hides the keepalive timer; cannot infer", s.Timer)
	}
}

// exactHint says how to get exact values, for the user kadiag runs as.
func exactHint() string {
	if kproc.IsRoot() {
		return "exact values need pidfd_getfd on the process (see the scan's notes)"
	}
	return "exact values need root or CAP_SYS_PTRACE (pidfd_getfd)"
}

// maxKeepIdle is the largest TCP_KEEPIDLE Linux accepts (MAX_TCP_KEEPIDLE):
// a middlebox timeout above it is met by any socket with keepalive on.
const maxKeepIdle = 32767 * time.Second

// deadPeer is how long a dead peer of an idle connection goes unnoticed.
// With TCP_USER_TIMEOUT the kernel gives up at the first probe at or after
// the user timeout (and after at least one probe) instead of after count probes.
func (k Keepalive) deadPeer() int {
	if !k.Enabled || k.IdleS <= 0 {
		return 0
	}
	if k.UserTimeoutMs == 0 {
		return k.IdleS + k.IntervalS*k.Count
	}
	ut := (k.UserTimeoutMs + 999) / 1000
	n := 1
	if k.IntervalS > 0 && ut > k.IdleS {
		n = max(1, (ut-k.IdleS+k.IntervalS-1)/k.IntervalS)
	}
	return k.IdleS + n*k.IntervalS
}

// Judge returns the verdict for a socket against a middlebox idle timeout
// and the reason in words for anything but ok. It reads the socket's state,
// addresses and keepalive values; a Reason already set (why a value is
// unknown) is kept.
func Judge(s *Socket, maxIdle time.Duration) (Verdict, string) {
	k := s.Keepalive
	if s.State == "LISTEN" {
		switch {
		case k.Source == Unknown:
			return Listen, s.Reason
		case !k.Enabled:
			return Listen, "accepted sockets inherit keepalive off"
		}
		return Listen, fmt.Sprintf("accepted sockets inherit keepalive on, first probe after %ds", k.IdleS)
	}
	if s.local == flowLocal || s.local == flowUnknown && IsLocal(s.Local, s.Remote) {
		return Local, "peer on this host, no middlebox in between"
	}
	if k.Source == Unknown {
		return Undetermined, s.Reason
	}
	if !k.Enabled {
		if k.Source == Inferred {
			return AtRisk, "keepalive off (no keepalive timer armed)"
		}
		return AtRisk, "keepalive off"
	}
	idle := time.Duration(k.IdleS) * time.Second
	switch {
	case k.IdleLowerBound && idle >= maxIdle:
		// The flow will have been idle that long when the next probe leaves.
		return AtRisk, fmt.Sprintf("first probe after at least %ds (inferred), middlebox forgets after %ds", k.IdleS, int(maxIdle/time.Second))
	case k.IdleLowerBound && maxIdle <= maxKeepIdle:
		return Undetermined, fmt.Sprintf("keepalive on, first probe after at least %ds (inferred lower bound: the kernel re-arms its timer lazily), middlebox forgets after %ds; %s",
			k.IdleS, int(maxIdle/time.Second), exactHint())
	case idle >= maxIdle:
		return AtRisk, fmt.Sprintf("first probe after %ds, middlebox forgets after %ds", k.IdleS, int(maxIdle/time.Second))
	}
	return OK, ""
}

// flowLocal and flowRemote cache IsLocal's answer in a Socket a scan made
// (from the addresses it read, not parsed back from their text).
const (
	flowUnknown int8 = iota
	flowLocal
	flowRemote
)

func localFlow(local, remote netip.Addr) int8 {
	if remote.IsLoopback() || local == remote {
		return flowLocal
	}
	return flowRemote
}

// IsLocal reports whether a flow between two "addr:port" endpoints stays
// on this host: traffic to a loopback address or to the host's own address
// (which Linux routes over lo) never passes a middlebox.
func IsLocal(local, remote string) bool {
	r, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	if r.Addr().IsLoopback() {
		return true
	}
	l, err := netip.ParseAddrPort(local)
	return err == nil && l.Addr() == r.Addr()
}
