// Package inspect reads the keepalive truth of a process's TCP sockets from
// outside the process: which sockets it holds (/proc/PID/fd), their kernel
// state and timers (inet_diag, dumped inside the socket's network namespace)
// and, where the caller may duplicate the process's descriptors, the exact
// options (pidfd_getfd + getsockopt). It judges every connected socket
// against the idle timeout of the middlebox in between.
//
// Scans never print. Problems that do not stop a scan (a process that exits
// half way, a lack of privilege that forces inferred values) are returned as
// notes in the Report for the caller to show.
package inspect

import (
	"errors"
	"time"
)

// Schema names the JSON layout of a Report.
const Schema = "kadiag.sockets/v1"

// Errors a scan returns, wrapped with the pid or path they concern; test
// them with errors.Is.
var (
	// ErrNoProcess means a requested pid does not exist.
	ErrNoProcess = errors.New("no such process")
	// ErrPermission means the caller may not read a process's descriptors or
	// enter its network namespace.
	ErrPermission = errors.New("permission denied")
	// ErrNetns means a path is not a network namespace or cannot be opened.
	ErrNetns = errors.New("cannot use network namespace")
	// ErrNoInetDiag means the kernel lacks inet_diag/tcp_diag, so socket
	// states cannot be read at all.
	ErrNoInetDiag = errors.New("kernel has no TCP socket diagnostics (inet_diag)")
)

// Source tells how a socket's keepalive values were obtained.
type Source string

const (
	// Exact values read with getsockopt on a duplicate of the socket.
	Exact Source = "getsockopt"
	// Inferred values estimated from the kernel's keepalive timer because the
	// caller may not duplicate the process's descriptors.
	Inferred Source = "inferred"
	// Unknown means neither way worked (the timer was hidden by another one).
	Unknown Source = "unknown"
)

// Verdict is the judgement of one socket against a middlebox idle timeout.
type Verdict string

const (
	// OK: keepalive is on and its first probe leaves before the middlebox
	// forgets the idle flow.
	OK Verdict = "ok"
	// AtRisk: the flow can sit idle past the middlebox's timeout; Reason says why.
	AtRisk Verdict = "at-risk"
	// Local: the peer is on this host (loopback), no middlebox in between.
	Local Verdict = "local"
	// Undetermined: the keepalive state could not be determined.
	Undetermined Verdict = "unknown"
	// Listen: a listening socket; it shows what accepted sockets inherit and
	// is not counted.
	Listen Verdict = "listen"
)

// Options tune a scan. The zero value checks against middlebox.DefaultIdle
// and reads exact values wherever privilege allows.
type Options struct {
	// MaxIdle is the middlebox's idle timeout; zero means 350 s (AWS NAT Gateway).
	MaxIdle time.Duration
	// Strict makes undetermined sockets count as failures in Report.Failed.
	Strict bool
	// NoExact skips pidfd_getfd and infers every value from kernel timers,
	// as an unprivileged caller gets them.
	NoExact bool
}

// Report is the result of a scan, grouped by process. Its JSON form is the
// kadiag.sockets/v1 contract.
type Report struct {
	Schema    string    `json:"schema"`
	MaxIdleS  int       `json:"max_idle_s"`
	Strict    bool      `json:"strict"`
	Processes []Process `json:"processes"`
	Summary   Summary   `json:"summary"`
	// Notes are problems that did not stop the scan, one line each.
	Notes []string `json:"notes,omitempty"`
}

// Failed reports whether a socket is at risk, or undetermined under Strict.
func (r *Report) Failed() bool {
	return r.Summary.AtRisk > 0 || (r.Strict && r.Summary.Unknown > 0)
}

// Summary counts connected sockets by verdict; listening sockets are
// counted apart and never fail a check.
type Summary struct {
	Sockets   int `json:"sockets"`
	OK        int `json:"ok"`
	AtRisk    int `json:"at_risk"`
	Local     int `json:"local"`
	Unknown   int `json:"unknown"`
	Listening int `json:"listening"`
}

// Process is one process and its TCP sockets. A --netns scan has one
// Process with PID 0 and the namespace path in NetnsPath.
type Process struct {
	PID       int      `json:"pid"`
	Comm      string   `json:"comm"`
	Netns     string   `json:"netns"`
	NetnsPath string   `json:"netns_path,omitempty"`
	Sysctl    Sysctl   `json:"sysctl"`
	Sockets   []Socket `json:"sockets"`
}

// Sysctl holds the keepalive sysctls of a network namespace: the values a
// socket uses for every option it did not set itself. Zero means unreadable.
type Sysctl struct {
	KeepaliveTime   int `json:"tcp_keepalive_time"`
	KeepaliveIntvl  int `json:"tcp_keepalive_intvl"`
	KeepaliveProbes int `json:"tcp_keepalive_probes"`
}

// Socket is one TCP socket as the kernel sees it, with its keepalive
// settings and verdict. FD is -1 when the socket was found through a
// namespace rather than a process.
type Socket struct {
	FD        int       `json:"fd"`
	Inode     uint64    `json:"inode"`
	Family    string    `json:"family"`
	State     string    `json:"state"`
	Local     string    `json:"local"`
	Remote    string    `json:"remote"`
	Keepalive Keepalive `json:"keepalive"`
	Verdict   Verdict   `json:"verdict"`
	Reason    string    `json:"reason"`

	// DeadPeerS is how long a silent dead peer goes unnoticed once the
	// connection is idle: idle + interval × count, or bounded by
	// TCP_USER_TIMEOUT. Zero when keepalive is off (never).
	DeadPeerS int `json:"dead_peer_s"`
	// Timer is the kernel timer inet_diag reports, named as ss names it:
	// "on" (retransmit), "keepalive", "timewait", "persist" or "" for none.
	Timer          string `json:"timer"`
	TimerExpiresMs int64  `json:"timer_expires_ms"`
	TimerRetrans   int    `json:"timer_retrans"`
	// LastDataRecvMs and LastAckRecvMs are tcp_info's idle clocks.
	LastDataRecvMs int64  `json:"last_data_recv_ms"`
	LastAckRecvMs  int64  `json:"last_ack_recv_ms"`
	UID            uint32 `json:"uid"`
	RecvQ          uint32 `json:"recv_q"`
	SendQ          uint32 `json:"send_q"`
}

// Keepalive is what a socket does when idle. With Source "inferred" the idle
// time is estimated from the timer and interval and count are the
// namespace's sysctls.
type Keepalive struct {
	Enabled       bool   `json:"enabled"`
	IdleS         int    `json:"idle_s"`
	IntervalS     int    `json:"interval_s"`
	Count         int    `json:"count"`
	UserTimeoutMs int    `json:"user_timeout_ms"`
	TimerArmed    bool   `json:"timer_armed"`
	NextProbeMs   int64  `json:"next_probe_ms"`
	ProbesSent    int    `json:"probes_sent"`
	Source        Source `json:"source"`
}
