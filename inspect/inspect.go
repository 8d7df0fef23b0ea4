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

	"github.com/kadiag/kadiag/internal/pod"
	kproc "github.com/kadiag/kadiag/internal/proc"
)

// Schema names the JSON layout of a Report.
const Schema = "kadiag.sockets/v1"

// Errors a scan returns, wrapped with the pid or path they concern; test
// them with errors.Is.
var (
	// ErrNoProcess means a requested pid does not exist. It is
	// proc.ErrNoProcess, the one value every kadiag package returns; errors
	// about one pid are *proc.PIDError values (errors.As).
	ErrNoProcess = kproc.ErrNoProcess
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
	// ExplainSource adds a note saying which read path gave the values
	// (BPF iterators, pidfd_getfd + getsockopt, kernel timers) and why.
	ExplainSource bool
	// Each, when set, is handed each process as soon as its sockets are
	// read and judged, and the Report lists no processes (its Summary still
	// counts their sockets): a node-wide scan then holds a few thousand
	// sockets at a time, not all of them. The Process is Each's to keep.
	Each func(Process)

	// noBPF skips the BPF iterators: tests compare both exact paths.
	noBPF bool

	// beforeDup, when set, runs before each descriptor is duplicated: tests
	// use it to reuse a descriptor number between listing and duplication.
	beforeDup func(pid, fd int)
}

// Report is the result of a scan, grouped by process. Its JSON form is the
// kadiag.sockets/v1 contract.
type Report struct {
	Schema    string    `json:"schema"`     // always Schema
	MaxIdleS  int       `json:"max_idle_s"` // the middlebox idle timeout judged against
	Strict    bool      `json:"strict"`     // undetermined sockets count as failures
	Processes []Process `json:"processes"`  // in the order asked for (--pid) or by pid
	Summary   Summary   `json:"summary"`    // verdict counts over all processes
	// Notes are problems that did not stop the scan, one line each.
	Notes []string `json:"notes,omitempty"`
}

// Failed reports whether a socket is at risk or dead, or undetermined
// under Strict.
func (r *Report) Failed() bool {
	return r.Summary.AtRisk > 0 || r.Summary.Dead > 0 || (r.Strict && r.Summary.Unknown > 0)
}

// Summary counts connected sockets by verdict; listening sockets are
// counted apart and never fail a check.
type Summary struct {
	Sockets   int `json:"sockets"`   // connected sockets, the sum of the next four and dead
	OK        int `json:"ok"`        // verdict ok
	AtRisk    int `json:"at_risk"`   // verdict at-risk
	Local     int `json:"local"`     // verdict local
	Unknown   int `json:"unknown"`   // verdict unknown
	Listening int `json:"listening"` // listening sockets, not counted above
	Dead      int `json:"dead"`      // verdict dead (a NAT on this node forgot the flow)
}

// Process is one process and its TCP sockets. A --netns scan has one
// Process with PID 0 and the namespace path in NetnsPath.
type Process struct {
	PID       int    `json:"pid"`                  // 0 for a --netns scan
	Comm      string `json:"comm"`                 // /proc/PID/comm
	Netns     string `json:"netns"`                // "net:[inode]", as /proc/PID/ns/net reads
	NetnsPath string `json:"netns_path,omitempty"` // the file a --netns scan opened
	Sysctl    Sysctl `json:"sysctl"`               // the namespace's keepalive defaults
	// Pod is the Kubernetes pod and container the process runs in (see
	// AddPods); absent outside any pod.
	Pod     *pod.Identity `json:"pod,omitempty"`
	Sockets []Socket      `json:"sockets"` // TCP sockets, by descriptor (or inode); last in the JSON
}

// Sysctl holds the keepalive sysctls of a network namespace: the values a
// socket uses for every option it did not set itself. Zero means unreadable.
type Sysctl struct {
	KeepaliveTime   int `json:"tcp_keepalive_time"`   // seconds idle before the first probe
	KeepaliveIntvl  int `json:"tcp_keepalive_intvl"`  // seconds between probes
	KeepaliveProbes int `json:"tcp_keepalive_probes"` // unanswered probes before giving up
}

// Socket is one TCP socket as the kernel sees it, with its keepalive
// settings and verdict. FD is -1 when the socket was found through a
// namespace rather than a process.
type Socket struct {
	FD     int    `json:"fd"`     // descriptor in the process, -1 for --netns
	Inode  uint64 `json:"inode"`  // socket inode, as ss -e shows it (ino:)
	Family string `json:"family"` // "inet" or "inet6" (IPv4-mapped addresses print as IPv4)
	// Protocol is "tcp" or "mptcp" (Multipath TCP: every Go ≥ 1.24 net.Listen
	// listener, programs run under mptcpize). MPTCP sockets take the
	// keepalive options but have no TCP_USER_TIMEOUT.
	Protocol string `json:"protocol"`
	// Netns is set only for a socket that lives in another network namespace
	// than its process ("net:[inode]", read with SIOCGSKNS on the duplicate):
	// created there before or after a setns, or received over a UNIX socket.
	Netns     string    `json:"netns,omitempty"`
	State     string    `json:"state"`     // kernel TCP state: ESTABLISHED, LISTEN, CLOSE_WAIT, ...
	Local     string    `json:"local"`     // "198.18.0.2:43210" or "[fd00::2]:443"
	Remote    string    `json:"remote"`    // the peer, same form
	Keepalive Keepalive `json:"keepalive"` // what the socket does when idle
	Verdict   Verdict   `json:"verdict"`   // judgement against Report.MaxIdleS
	Reason    string    `json:"reason"`    // why, in words, for anything but ok

	// DeadPeerS is how long a silent dead peer goes unnoticed once the
	// connection is idle: idle + interval × count, or bounded by
	// TCP_USER_TIMEOUT. Zero when keepalive is off (never).
	DeadPeerS int `json:"dead_peer_s"`
	// Timer is the kernel timer inet_diag reports, named as ss names it:
	// "on" (retransmit), "keepalive", "timewait", "persist" or "" for none.
	Timer          string `json:"timer"`
	TimerExpiresMs int64  `json:"timer_expires_ms"` // until the timer fires
	TimerRetrans   int    `json:"timer_retrans"`    // retransmits, or probes for the keepalive timer
	// LastDataRecvMs and LastAckRecvMs are tcp_info's idle clocks.
	LastDataRecvMs int64  `json:"last_data_recv_ms"`
	LastAckRecvMs  int64  `json:"last_ack_recv_ms"`
	UID            uint32 `json:"uid"`    // the socket's owner
	RecvQ          uint32 `json:"recv_q"` // bytes received, not yet read (listeners: accept queue)
	SendQ          uint32 `json:"send_q"` // bytes sent, not yet acknowledged (listeners: backlog)
	// Conntrack is the flow's entry in a conntrack table of this node, when
	// asked for (--max-idle auto, --conntrack-netns) and found; else null.
	Conntrack *Conntrack `json:"conntrack"`

	local int8 // IsLocal(Local, Remote), when the scan knows it (flowLocal)
}

// Keepalive is what a socket does when idle. With Source "inferred" the idle
// time is estimated from the timer and interval and count are the
// namespace's sysctls.
type Keepalive struct {
	Enabled       bool `json:"enabled"`         // SO_KEEPALIVE
	IdleS         int  `json:"idle_s"`          // TCP_KEEPIDLE: idle seconds before the first probe
	IntervalS     int  `json:"interval_s"`      // TCP_KEEPINTVL: seconds between probes
	Count         int  `json:"count"`           // TCP_KEEPCNT: unanswered probes before giving up
	UserTimeoutMs int  `json:"user_timeout_ms"` // TCP_USER_TIMEOUT, 0 when unset
	// UserTimeoutUnsupported: the socket has no TCP_USER_TIMEOUT at all
	// (MPTCP answers EOPNOTSUPP); shown as "not supported", not as a failure.
	UserTimeoutUnsupported bool  `json:"user_timeout_unsupported,omitempty"`
	TimerArmed             bool  `json:"timer_armed"`   // the kernel's keepalive timer is pending
	NextProbeMs            int64 `json:"next_probe_ms"` // until the timer fires (when armed)
	// IdleLowerBound: IdleS is inferred and only a lower bound. The kernel
	// re-arms the keepalive timer lazily (when it fires, for the time still
	// missing), so after traffic "time since last receive + time until the
	// timer fires" is below the socket's real TCP_KEEPIDLE.
	IdleLowerBound bool   `json:"idle_lower_bound,omitempty"`
	ProbesSent     int    `json:"probes_sent"` // unanswered probes so far
	Source         Source `json:"source"`      // how the values were obtained
}
