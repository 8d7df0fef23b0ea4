// Package fix turns TCP keepalive on where a process cannot be restarted or
// preloaded: on the sockets a running process holds now (pidfd_getfd +
// setsockopt, or a BPF TCP iterator selecting them by cookie), and on every
// new connection of a cgroup v2 (sock_ops and cgroup/setsockopt programs).
//
// Every write follows the same rules: it changes only the keepalive options
// it names, only on sockets whose identity was re-checked on the duplicate
// itself (or selected by socket cookie, which the kernel never reuses), and
// it never turns keepalive off or lengthens a shorter timing the
// application chose (enforce semantics, as in the preload library). Every
// socket's options are read back after the write and reported as
// before → after. The package never prints: it returns a Report.
package fix

import (
	"errors"
	"fmt"
	"time"

	"github.com/kadiag/kadiag/internal/bpf"
)

// Schema names the JSON layout of a Report.
const Schema = "kadiag.fix/v1"

// Errors, wrapped with detail; test with errors.Is.
var (
	// ErrNoProcess means the pid does not exist (or exited before the fix).
	ErrNoProcess = errors.New("no such process")
	// ErrPermission means the caller may not duplicate the process's
	// descriptors (pidfd_getfd is a ptrace-attach check).
	ErrPermission = errors.New("permission denied")
	// ErrNoCgroup2 means no cgroup v2 is mounted, or the path is not in it.
	ErrNoCgroup2 = errors.New("not a cgroup v2 directory")
	// ErrCapability, ErrNoBTF and ErrNotAttached come from the BPF side.
	ErrCapability  = bpf.ErrCapability
	ErrNoBTF       = bpf.ErrNoBTF
	ErrNotAttached = bpf.ErrNotAttached
)

// Settings are the keepalive options a fix enforces. Their defaults are the
// preload library's: idle 60 s, interval 15 s, 4 probes.
type Settings struct {
	Idle        time.Duration // TCP_KEEPIDLE, whole seconds
	Interval    time.Duration // TCP_KEEPINTVL, whole seconds
	Count       int           // TCP_KEEPCNT
	UserTimeout time.Duration // TCP_USER_TIMEOUT; 0: untouched
}

// Defaults of the preload library (preload.DefaultIdle and friends).
const (
	DefaultIdle     = 60 * time.Second
	DefaultInterval = 15 * time.Second
	DefaultCount    = 4
)

// DefaultSettings returns the preload library's defaults.
func DefaultSettings() Settings {
	return Settings{Idle: DefaultIdle, Interval: DefaultInterval, Count: DefaultCount}
}

func (s Settings) bpf() bpf.Settings {
	return bpf.Settings{Idle: s.Idle, Interval: s.Interval, Count: s.Count, UserTimeout: s.UserTimeout}
}

// Validate checks the kernel's limits.
func (s Settings) Validate() error { return s.bpf().Validate() }

// settingsJSON is the JSON form of Settings in a Report.
type settingsJSON struct {
	KeepidleS     int `json:"keepidle_s"`
	KeepintvlS    int `json:"keepintvl_s"`
	Keepcnt       int `json:"keepcnt"`
	UserTimeoutMs int `json:"user_timeout_ms"` // 0: untouched
}

func (s Settings) json() settingsJSON {
	return settingsJSON{int(s.Idle / time.Second), int(s.Interval / time.Second), s.Count, int(s.UserTimeout / time.Millisecond)}
}

// Via names how a live fix reached the sockets.
type Via string

const (
	// ViaPidfd duplicates each socket (pidfd_getfd) and calls setsockopt.
	ViaPidfd Via = "pidfd"
	// ViaBPF runs an iter/tcp program in the process's network namespace.
	ViaBPF Via = "bpf"
)

// Action is what a fix did to one socket.
type Action string

const (
	// Changed: at least one option was set; After shows the result.
	Changed Action = "changed"
	// Unchanged: the socket already keeps the settings (or shorter ones).
	Unchanged Action = "unchanged"
	// WouldChange: --dry-run; the options that would be set are in Plan.
	WouldChange Action = "would-change"
	// Skipped: not a target (Reason says why; --all-sockets includes it).
	Skipped Action = "skipped"
	// Failed: an option could not be set (Error says which and why).
	Failed Action = "failed"
	// Gone: the socket was closed, or its descriptor reused for another
	// file, between the listing and the write; nothing was written.
	Gone Action = "gone"
)

// Options are a socket's keepalive options as read from the socket.
type Options struct {
	Keepalive     bool `json:"keepalive"`       // SO_KEEPALIVE
	IdleS         int  `json:"idle_s"`          // TCP_KEEPIDLE
	IntervalS     int  `json:"interval_s"`      // TCP_KEEPINTVL
	Count         int  `json:"count"`           // TCP_KEEPCNT
	UserTimeoutMs int  `json:"user_timeout_ms"` // TCP_USER_TIMEOUT, 0 unset
}

// Report is the result of a fix, a removal or a listing. Its JSON form is
// the kadiag.fix/v1 contract.
type Report struct {
	Schema string `json:"schema"` // always Schema
	// Mode is "pid" (live sockets), "cgroup" (attach), "remove" or "list".
	Mode     string       `json:"mode"`
	DryRun   bool         `json:"dry_run"`
	Settings settingsJSON `json:"settings"`
	// Live fix (--pid): the process, the way taken and every socket.
	Via     Via      `json:"via,omitempty"`
	Process *Process `json:"process,omitempty"`
	Sockets []Socket `json:"sockets"`
	Summary Summary  `json:"summary"`
	// WatchS is how long sockets were observed after the change (--watch).
	WatchS float64 `json:"watch_s,omitempty"`
	// Policies are the cgroup policies attached, removed or listed.
	Policies []Policy `json:"policies"`
	Notes    []string `json:"notes,omitempty"`
}

// Failed reports whether a socket could not be fixed.
func (r *Report) Failed() bool { return r.Summary.Failed > 0 }

// Process identifies the process a live fix worked on.
type Process struct {
	PID   int    `json:"pid"`
	Comm  string `json:"comm"`
	Netns string `json:"netns"` // "net:[inode]"
}

// Socket is one socket of the process and what the fix did to it.
type Socket struct {
	FD       int    `json:"fd"`
	Inode    uint64 `json:"inode"`
	Cookie   uint64 `json:"cookie"`   // SO_COOKIE, as ss -e prints sk:
	Protocol string `json:"protocol"` // "tcp" or "mptcp"
	Family   string `json:"family"`   // "inet" or "inet6"
	State    string `json:"state"`    // ESTABLISHED, LISTEN, ...
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Action   Action `json:"action"`
	Reason   string `json:"reason,omitempty"` // why skipped, unchanged or failed
	// Before and After are read from the socket; After equals Before for
	// skipped and dry-run sockets.
	Before Options `json:"before"`
	After  Options `json:"after"`
	// Plan names the options set (or, dry run, to be set), in order.
	Plan  []string `json:"plan"`
	Error string   `json:"error,omitempty"`
	// Watch is what was observed after the change (--watch).
	Watch *Watch `json:"watch,omitempty"`
}

// Summary counts sockets by action.
type Summary struct {
	Sockets     int `json:"sockets"`
	Changed     int `json:"changed"`
	Unchanged   int `json:"unchanged"`
	WouldChange int `json:"would_change"`
	Skipped     int `json:"skipped"`
	Failed      int `json:"failed"`
	Gone        int `json:"gone"`
	// Watch outcomes (--watch).
	Alive      int `json:"alive"`
	Forgotten  int `json:"forgotten"`
	Unanswered int `json:"unanswered"`
}

func (r *Report) count() {
	r.Summary = Summary{Sockets: len(r.Sockets)}
	for _, s := range r.Sockets {
		switch s.Action {
		case Changed:
			r.Summary.Changed++
		case Unchanged:
			r.Summary.Unchanged++
		case WouldChange:
			r.Summary.WouldChange++
		case Skipped:
			r.Summary.Skipped++
		case Failed:
			r.Summary.Failed++
		case Gone:
			r.Summary.Gone++
		}
		if s.Watch != nil {
			switch s.Watch.Outcome {
			case Alive:
				r.Summary.Alive++
			case Forgotten:
				r.Summary.Forgotten++
			case Unanswered:
				r.Summary.Unanswered++
			}
		}
	}
}

// Policy is a cgroup policy: kadiag's programs on one cgroup v2 directory.
type Policy struct {
	Cgroup   string       `json:"cgroup"`
	CgroupID uint64       `json:"cgroup_id"`
	Settings settingsJSON `json:"settings"`
	// Pinned is the bpffs directory that keeps it attached, "" while held
	// by a running kadiag (--hold).
	Pinned string `json:"pinned"`
	// HolderPID is the kadiag process holding an unpinned policy.
	HolderPID int       `json:"holder_pid,omitempty"`
	Since     time.Time `json:"since"`
	Replaced  bool      `json:"replaced"` // an earlier kadiag policy was replaced
}

func newReport(mode string, s Settings) *Report {
	return &Report{Schema: Schema, Mode: mode, Settings: s.json(), Sockets: []Socket{}, Policies: []Policy{}}
}

func (r *Report) notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}
