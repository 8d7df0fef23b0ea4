// Package bpf owns kadiag's eBPF programs: it writes them with cilium/ebpf's
// asm package (no clang: the binary stays static and CGO_ENABLED=0), looks
// up kernel types in BTF, loads them, attaches them and pins them in bpffs.
//
// Three programs set keepalive options with enforce semantics (never turn
// keepalive off, never lengthen a shorter timing the application chose):
//   - a sock_ops program on a cgroup v2 sets them on every connection
//     established (actively or passively) and on every listen;
//   - a cgroup/setsockopt program on the same cgroup rewrites an
//     application's later setsockopt(SO_KEEPALIVE, 0) or longer timing;
//   - an iter/tcp program sets them on existing sockets, chosen by cookie.
package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Errors returned by the package, wrapped with detail; test with errors.Is.
var (
	// ErrNoBTF means the kernel exposes no BTF (/sys/kernel/btf/vmlinux),
	// which the iterator needs to attach.
	ErrNoBTF = errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux)")
	// ErrCapability means the caller lacks a capability the operation needs;
	// a *CapabilityError says which.
	ErrCapability = errors.New("missing capability")
	// ErrUnsupported means the kernel rejected a program or attachment that
	// needs a newer kernel.
	ErrUnsupported = errors.New("not supported by this kernel")
	// ErrNotAttached means no kadiag policy is pinned for a cgroup.
	ErrNotAttached = errors.New("no kadiag policy attached")
)

// Settings are the keepalive options the programs enforce. Zero
// UserTimeout leaves TCP_USER_TIMEOUT alone.
type Settings struct {
	Idle        time.Duration // TCP_KEEPIDLE, whole seconds 1..32767
	Interval    time.Duration // TCP_KEEPINTVL, whole seconds 1..32767
	Count       int           // TCP_KEEPCNT, 1..127
	UserTimeout time.Duration // TCP_USER_TIMEOUT, milliseconds; 0: untouched
}

// Socket option levels and names (include/uapi/linux/tcp.h, asm-generic/socket.h).
const (
	solSocket      = unix.SOL_SOCKET
	solTCP         = unix.SOL_TCP
	soKeepalive    = unix.SO_KEEPALIVE
	tcpKeepidle    = unix.TCP_KEEPIDLE
	tcpKeepintvl   = unix.TCP_KEEPINTVL
	tcpKeepcnt     = unix.TCP_KEEPCNT
	tcpUserTimeout = unix.TCP_USER_TIMEOUT
)

// option is one socket option a program enforces.
type option struct {
	level, name int32
	target      int32
	// on: SO_KEEPALIVE, whose only enforced value is "on". Otherwise a
	// timing: kept when positive and no longer than target.
	on bool
	// zeroIsOff: 0 means "disabled" (TCP_USER_TIMEOUT) and is replaced;
	// for the keepalive timings 0 is invalid and left for the kernel to refuse.
	zeroIsOff bool
	// readOnly: only read (the iterator reports TCP_USER_TIMEOUT even when
	// the settings leave it alone).
	readOnly bool
}

// options lists the options in the order they must be set: SO_KEEPALIVE
// first, so that the kernel counts the idle time already elapsed when
// TCP_KEEPIDLE arms the timer.
func (s Settings) options() []option {
	o := []option{
		{level: solSocket, name: soKeepalive, target: 1, on: true},
		{level: solTCP, name: tcpKeepidle, target: int32(s.Idle / time.Second)},
		{level: solTCP, name: tcpKeepintvl, target: int32(s.Interval / time.Second)},
		{level: solTCP, name: tcpKeepcnt, target: int32(s.Count)},
	}
	if s.UserTimeout > 0 {
		o = append(o, option{level: solTCP, name: tcpUserTimeout, target: int32(s.UserTimeout / time.Millisecond), zeroIsOff: true})
	}
	return o
}

// Validate checks the kernel's limits (1..32767 s, 1..127 probes).
func (s Settings) Validate() error {
	secs := func(d time.Duration) bool { return d >= time.Second && d <= 32767*time.Second && d%time.Second == 0 }
	switch {
	case !secs(s.Idle):
		return fmt.Errorf("keepidle %v: want whole seconds from 1s to 32767s", s.Idle)
	case !secs(s.Interval):
		return fmt.Errorf("keepintvl %v: want whole seconds from 1s to 32767s", s.Interval)
	case s.Count < 1 || s.Count > 127:
		return fmt.Errorf("keepcnt %d: want 1 to 127", s.Count)
	case s.UserTimeout < 0 || s.UserTimeout > time.Duration(1<<31-1)*time.Millisecond || s.UserTimeout%time.Millisecond != 0:
		return fmt.Errorf("user timeout %v: want whole milliseconds from 0 (untouched) up to 24 days", s.UserTimeout)
	}
	return nil
}

// Capability numbers (linux/capability.h); x/sys has them, names are ours.
var capNames = map[int]string{
	unix.CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
	unix.CAP_SYS_PTRACE:      "CAP_SYS_PTRACE",
	unix.CAP_BPF:             "CAP_BPF",
	unix.CAP_NET_ADMIN:       "CAP_NET_ADMIN",
	unix.CAP_PERFMON:         "CAP_PERFMON",
	unix.CAP_SYS_ADMIN:       "CAP_SYS_ADMIN",
}

// CapabilityError names the capabilities an operation lacks.
type CapabilityError struct {
	Op      string   // what was attempted: "attach to a cgroup", "run a TCP iterator"
	Missing []string // e.g. ["CAP_BPF", "CAP_NET_ADMIN"]
}

func (e *CapabilityError) Error() string {
	exe, err := os.Executable()
	if err != nil {
		exe = "$(command -v kadiag)"
	}
	them := "it"
	if len(e.Missing) > 1 {
		them = "them"
	}
	lower := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		lower[i] = strings.ToLower(m)
	}
	return fmt.Sprintf("%s: missing %s: run as root, or grant %s with 'sudo setcap %s+ep %s' (see docs/privileges.md)",
		e.Op, strings.Join(e.Missing, ", "), them, strings.Join(lower, ","), exe)
}

// Is makes errors.Is(err, ErrCapability) true.
func (e *CapabilityError) Is(target error) bool { return target == ErrCapability }

// effective returns the caller's effective capability set.
func effective() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// need returns a *CapabilityError for the capabilities in caps the caller
// lacks, or nil. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the
// kernel accepts it for both.
func need(op string, caps ...int) error {
	eff, err := effective()
	if err != nil {
		return err
	}
	has := func(c int) bool { return eff&(1<<uint(c)) != 0 }
	var missing []string
	for _, c := range caps {
		if has(c) || ((c == unix.CAP_BPF || c == unix.CAP_PERFMON) && has(unix.CAP_SYS_ADMIN)) {
			continue
		}
		missing = append(missing, capNames[c])
	}
	if len(missing) > 0 {
		return &CapabilityError{Op: op, Missing: missing}
	}
	return nil
}

// Missing returns a *CapabilityError naming those of caps (CAP_* numbers
// from x/sys/unix) the caller lacks for op, or nil when it holds them all.
func Missing(op string, caps ...int) error { return need(op, caps...) }

// loadErr turns a load or attach error into one of the package's errors.
func loadErr(op string, caps []int, err error) error {
	// The verifier's refusal arrives as EPERM or EACCES too: it is not a
	// matter of privilege.
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) && len(verr.Log) > 0 && !errors.Is(verr.Cause, unix.EPERM) {
		return fmt.Errorf("%s: %w: the verifier refused it: %s", op, ErrUnsupported, verr.Log[len(verr.Log)-1])
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		if cerr := need(op, caps...); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%s: %w (is kernel.unprivileged_bpf_disabled or a security module refusing BPF?)", op, err)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s: %w: %v", op, ErrUnsupported, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
