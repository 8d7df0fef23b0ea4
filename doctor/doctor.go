// Package doctor answers, for one process, "what is wrong and what do I
// change": which runtime it is (JVM and version, Go with its build info,
// Python, Node, musl or glibc, static), which of its TCP sockets a
// middlebox can forget (package inspect), whether the keepalive preload
// library is loaded and effective (package preload), the keepalive sysctls
// of its network namespace, whether it runs in a container or a Kubernetes
// pod, and the exact fix for that runtime.
package doctor

import (
	"fmt"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/pod"
	kproc "github.com/kadiag/kadiag/internal/proc"
	"github.com/kadiag/kadiag/nodebox"
	"github.com/kadiag/kadiag/preload"
)

// Schema names the JSON contract of Result.
const Schema = "kadiag.doctor/v1"

// ErrNoProcess is returned (wrapped in a *proc.PIDError) for a pid that does
// not exist. It is proc.ErrNoProcess, the module's one value, which inspect
// and preload return too.
var ErrNoProcess = kproc.ErrNoProcess

// Options tune a diagnosis.
type Options struct {
	// MaxIdle is the middlebox's idle timeout; zero means 350 s.
	MaxIdle time.Duration
	// LibDir is where the fix tells the user to put the preload library on
	// a host; zero means /usr/local/lib/kadiag.
	LibDir string
	// Container names the application container in the Kubernetes patch;
	// zero means the process's own container as the log layout names it,
	// else "app".
	Container string
	// Middleboxes, when set, judges the sockets with what the node shows of
	// its own middleboxes (nodebox: --max-idle auto, --conntrack-netns).
	Middleboxes *nodebox.Options
	// LogRoot is the node's log directory holding the kubelet's pods/ and
	// containers/ (pod.LogRoot's default: /var/log).
	LogRoot string
	// Scan reads the process's sockets, once per diagnosis: the socket rows
	// and the preload verdict rest on the same reading. Nil means
	// inspect.ScanPIDs; tests wrap it to count or to act between readings.
	Scan func(pids []int, o inspect.Options) (*inspect.Report, error)
}

// Result is the diagnosis of one process. Its JSON is kadiag.doctor/v1.
type Result struct {
	Schema    string    `json:"schema"`
	PID       int       `json:"pid"`
	Comm      string    `json:"comm"`
	MaxIdleS  int       `json:"max_idle_s"`
	Runtime   Runtime   `json:"runtime"`
	Container Container `json:"container"`
	// Netns and Sysctl are the process's network namespace and its
	// keepalive sysctls: what sockets use for options they did not set.
	Netns  string         `json:"netns"`
	Sysctl inspect.Sysctl `json:"sysctl"`
	// Sockets are the process's TCP sockets with their verdicts, as
	// `kadiag sockets` shows them; Summary counts them.
	Sockets []inspect.Socket `json:"sockets"`
	Summary inspect.Summary  `json:"summary"`
	// Preload says whether the keepalive library is loaded and effective.
	Preload Preload `json:"preload"`
	// Healthy is false when a socket is at risk or a preload library that
	// was asked for does not work.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
	// Fixes are the changes that help this runtime, best first.
	Fixes []Fix `json:"fixes"`
	// Notes are facts worth knowing (inferred values, limits of the checks).
	Notes []string `json:"notes,omitempty"`
}

// Preload is the part of `kadiag preload check` that doctor shows.
type Preload struct {
	// Requested: LD_PRELOAD names libkadiag_keepalive.
	Requested bool   `json:"requested"`
	Mapped    bool   `json:"mapped"`
	Path      string `json:"path,omitempty"`
	// Effective: loaded and every TCP socket carries its settings.
	Effective bool `json:"effective"`
	// Possible: LD_PRELOAD can work in this process at all (not Go, not
	// static, not secure-execution).
	Possible bool     `json:"possible"`
	Reasons  []string `json:"reasons,omitempty"`
}

// Fix is one change that makes the process's idle connections survive.
type Fix struct {
	// Kind is env, kubernetes, java, go, python, fix, sysctl or rebuild.
	Kind  string `json:"kind"`
	Title string `json:"title"`
	// Text is what to run, paste or apply; Lang names its language for
	// syntax highlighting (sh, yaml, java, go, python).
	Text string `json:"text,omitempty"`
	Lang string `json:"lang,omitempty"`
	// Why explains, in a sentence, what the change does or does not do.
	Why string `json:"why,omitempty"`
}

// Diagnose examines the process pid. Reading its sockets' exact options and
// its environment needs root or CAP_SYS_PTRACE; without them values are
// inferred and said so in Notes.
func Diagnose(pid int, o Options) (*Result, error) {
	if o.MaxIdle == 0 {
		o.MaxIdle = 350 * time.Second
	}
	if o.LibDir == "" {
		o.LibDir = "/usr/local/lib/kadiag"
	}
	if pid <= 0 {
		return nil, kproc.Errorf(pid, "%w (pids are positive)", ErrNoProcess)
	}
	if o.Scan == nil {
		o.Scan = inspect.ScanPIDs
	}
	rep, err := o.Scan([]int{pid}, inspect.Options{MaxIdle: o.MaxIdle})
	if err != nil {
		return nil, err
	}
	if o.Middleboxes != nil {
		view, err := nodebox.Read(*o.Middleboxes)
		if err != nil {
			return nil, err
		}
		view.Apply(rep)
	}
	r := &Result{Schema: Schema, PID: pid, MaxIdleS: rep.MaxIdleS,
		Sockets: []inspect.Socket{}, Summary: rep.Summary, Problems: []string{}, Fixes: []Fix{}, Notes: rep.Notes}
	for _, p := range rep.Processes {
		r.Netns, r.Sysctl = p.Netns, p.Sysctl
		r.Sockets = append(r.Sockets, p.Sockets...)
	}
	check, err := preload.CheckSockets(pid, preload.SocketsOf(inspect.Process{Sockets: r.Sockets}))
	if err != nil {
		return nil, err
	}
	r.Comm = check.Comm
	r.Runtime = detectRuntime(pid, check.Binary)
	// A log root that cannot be read leaves the pod unnamed, not the
	// diagnosis undone: the cgroup still gives the pod UID.
	logs, _ := pod.ReadLogs(pod.LogRoot(o.LogRoot))
	r.Container = detectContainer(pid, logs)
	if o.Container == "" {
		o.Container = r.Container.Name
	}
	if o.Container == "" {
		o.Container = "app"
	}
	r.Preload = Preload{Requested: check.Library.Preload != "" && containsLibrary(check.Library.Preload),
		Mapped: check.Library.Mapped, Path: check.Library.Path, Effective: check.Effective,
		Possible: r.Runtime.Preloadable()}
	if r.Preload.Requested || r.Preload.Mapped {
		r.Preload.Reasons = check.Reasons
	}
	r.judge()
	r.Fixes = fixes(r, o)
	return r, nil
}

// judge fills Healthy and Problems.
func (r *Result) judge() {
	var off, slow, dead int
	for _, s := range r.Sockets {
		if s.Verdict == inspect.Dead {
			dead++
		}
		if s.Verdict != inspect.AtRisk {
			continue
		}
		if s.Keepalive.Enabled {
			slow++
		} else {
			off++
		}
	}
	if dead > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d connected sockets are dead: a NAT on this node has already forgotten their flows, so the next reply is lost (reconnect; then turn keepalive on)", dead, r.Summary.Sockets))
	}
	if off > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d connected sockets have keepalive off: idle past %ds, a middlebox forgets them and the client waits for a reply that never comes",
			off, r.Summary.Sockets, r.MaxIdleS))
	}
	if slow > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d connected sockets have keepalive on but probe first after the middlebox's %ds", slow, r.Summary.Sockets, r.MaxIdleS))
	}
	if (r.Preload.Requested || r.Preload.Mapped) && !r.Preload.Effective {
		msg := "the keepalive preload library is configured but not effective"
		if len(r.Preload.Reasons) > 0 {
			msg += ": " + r.Preload.Reasons[0]
		}
		r.Problems = append(r.Problems, msg)
	}
	r.Healthy = len(r.Problems) == 0
}

func containsLibrary(ldPreload string) bool {
	for _, f := range splitPreload(ldPreload) {
		if baseName(f) == preload.LibraryName {
			return true
		}
	}
	return false
}
