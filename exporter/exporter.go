// Package exporter serves kadiag's node-wide socket scan to Prometheus. A
// scan loop reads every process's TCP sockets on its own interval (the
// `kadiag sockets --all` scan, one inet_diag dump per network namespace)
// and publishes the result as an immutable snapshot; scrapes render the
// last completed snapshot and never wait on, or trigger, a scan.
//
// Metrics are per container by default (labels namespace, pod, container,
// pod_uid, container_id, as cAdvisor and kube-state-metrics name them; a
// process outside any pod is labelled by comm), the sum of the container's
// processes: their number is bounded by the containers on the node, not by
// processes or connections. PerProcess adds a pid label, one series set per
// process. Keepalive probes sent are counted per network namespace.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/parallel"
	"github.com/kadiag/kadiag/internal/pod"
	kproc "github.com/kadiag/kadiag/internal/proc"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/nodebox"
	"golang.org/x/sys/unix"
)

// Options configure an Exporter.
type Options struct {
	// Interval is the time between the starts of two scans; zero means 30 s.
	// A scan that takes longer delays the next one instead of overlapping it.
	Interval time.Duration
	// MaxIdle is the middlebox idle timeout connections are judged against;
	// zero means 350 s (AWS NAT Gateway).
	MaxIdle time.Duration
	// Logger receives one line per failed scan; nil discards.
	Logger *slog.Logger
	// PerProcess labels series by pid (and comm) instead of summing each
	// container's processes: one series set per process.
	PerProcess bool
	// Middleboxes, when set, has every scan read the node's own
	// middleboxes (nodebox): --max-idle auto, flows' conntrack entries, and
	// verdict dead for flows a --conntrack-netns NAT forgot.
	Middleboxes *nodebox.Options
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth), as node_exporter's --web.config.file; empty serves plain HTTP.
	WebConfigFile string
	// LogRoot is the node's log directory with the kubelet's pods/ and
	// containers/ (pod.LogRoot: --log-root, $KADIAG_LOG_ROOT, /var/log),
	// which names pods and containers.
	LogRoot string
}

// DefaultInterval is the scan interval when Options.Interval is zero.
const DefaultInterval = 30 * time.Second

// ProcessStats is what the exporter publishes about one process.
type ProcessStats struct {
	PID  int
	Comm string
	// Pod is the pod and container the process runs in (empty outside).
	Pod pod.Identity
	// Established counts ESTABLISHED TCP connections, loopback ones included.
	Established int
	// IdleKeepaliveOff counts ESTABLISHED connections through a middlebox
	// (not loopback) with keepalive off that have received nothing for
	// longer than MaxIdle: a middlebox with that timeout has already
	// forgotten them.
	IdleKeepaliveOff int
	// Dead counts ESTABLISHED connections whose flow a NAT on this node
	// (--conntrack-netns) has already forgotten.
	Dead int
	// AtRiskKeepaliveOff and AtRiskIdleTooLong split the connections judged
	// at risk (inspect.AtRisk) by reason: no keepalive at all, or a first
	// probe that comes after the middlebox has forgotten the flow.
	AtRiskKeepaliveOff int
	AtRiskIdleTooLong  int
	// Sockets counts every TCP socket, listeners included, by how its
	// keepalive values were read.
	Sockets map[inspect.Source]int
	// PreloadMapped tells whether libkadiag_keepalive is mapped.
	PreloadMapped bool
}

// AtRisk is the number of connections at risk for any reason.
func (p ProcessStats) AtRisk() int { return p.AtRiskKeepaliveOff + p.AtRiskIdleTooLong }

// Snapshot is the result of one completed scan.
type Snapshot struct {
	// Start is when the scan began, Duration how long it took.
	Start    time.Time
	Duration time.Duration
	// Processes holds every process with at least one TCP socket.
	Processes []ProcessStats
	// Netns holds every network namespace of those processes.
	Netns []NetnsStats
	// Notes are the scan's non-fatal problems (skipped namespaces,
	// inferred values).
	Notes []string
}

// Exporter runs the scan loop and renders its snapshots as metrics.
type Exporter struct {
	o       Options
	started time.Time

	snap     atomic.Pointer[Snapshot]
	scans    atomic.Uint64
	failures atomic.Uint64
	// lastEnd is the end of the last scan, failed or not, in Unix ns: the
	// health check's proof that the loop is not stuck.
	lastEnd atomic.Int64
	lastErr atomic.Pointer[string]

	// scan is Scan; tests replace it to hold a scan open.
	scan func(Options) (*Snapshot, error)
}

// New returns an Exporter; call Run to start scanning.
func New(o Options) *Exporter {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = middlebox.DefaultIdle
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{o: o, started: time.Now(), scan: Scan}
	e.lastEnd.Store(e.started.UnixNano())
	return e
}

// Run scans at once and then every Interval until ctx ends.
func (e *Exporter) Run(ctx context.Context) {
	t := time.NewTicker(e.o.Interval)
	defer t.Stop()
	for {
		e.ScanOnce()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ScanOnce runs one scan and publishes its snapshot. A failed scan keeps
// the previous snapshot and counts a scan error.
func (e *Exporter) ScanOnce() (*Snapshot, error) {
	s, err := e.scan(e.o)
	// The outcome is published before the scan is counted, so whoever sees
	// the count also sees the snapshot or the error.
	defer func() {
		e.lastEnd.Store(time.Now().UnixNano())
		e.scans.Add(1)
	}()
	if err != nil {
		e.failures.Add(1)
		msg := err.Error()
		e.lastErr.Store(&msg)
		e.o.Logger.Error("scan failed", "err", err)
		return nil, err
	}
	e.lastErr.Store(nil)
	if prev := e.snap.Load(); prev == nil || !slices.Equal(prev.Notes, s.Notes) {
		for _, n := range s.Notes {
			e.o.Logger.Warn("scan note", "note", n)
		}
	}
	e.snap.Store(s)
	return s, nil
}

// Snapshot returns the last completed scan, or nil before the first.
func (e *Exporter) Snapshot() *Snapshot { return e.snap.Load() }

// Healthy reports whether the scan loop is alive: a scan has ended within
// three intervals (or the first is still within them). A stuck scan, or a
// loop that has not ended a scan for that long, is unhealthy.
func (e *Exporter) Healthy() error {
	last := time.Unix(0, e.lastEnd.Load())
	if age := time.Since(last); age > 3*e.o.Interval {
		return errors.New("no scan has finished for " + age.Round(time.Second).String())
	}
	if p := e.lastErr.Load(); p != nil && e.snap.Load() == nil {
		return errors.New("no scan has succeeded yet: " + *p)
	}
	return nil
}

// Ready reports whether /metrics has something to say: the loop is
// healthy and a scan has completed. Until then a scrape would miss every
// process, which is indistinguishable from a node without risk, so
// readiness (unlike liveness) waits for the first scan.
func (e *Exporter) Ready() error {
	if err := e.Healthy(); err != nil {
		return err
	}
	if e.snap.Load() == nil {
		return errors.New("the first scan is still running")
	}
	return nil
}

// Scan reads every process on the host once and summarises it per
// process. It goes one network namespace at a time (inspect.ScanPIDs over
// the namespace's processes: one inet_diag dump shared by all of them), so
// only one namespace's dump and sockets are in memory at once, and each is
// reduced to per-process counts before the next is read.
func Scan(eo Options) (*Snapshot, error) {
	start := time.Now()
	if eo.MaxIdle <= 0 {
		eo.MaxIdle = middlebox.DefaultIdle
	}
	o := inspect.Options{MaxIdle: eo.MaxIdle}
	groups, denied, err := pidsByNetns()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	s := &Snapshot{Start: start}
	var view *nodebox.View
	if eo.Middleboxes != nil {
		var err error
		if view, err = nodebox.Read(*eo.Middleboxes); err != nil {
			return nil, err
		}
	}
	logs, err := pod.ReadLogs(pod.LogRoot(eo.LogRoot))
	if err != nil {
		// Pods are then known by UID only; say so once per scan.
		s.Notes = append(s.Notes, fmt.Sprintf("pod and container names unknown: %v (mount the node's /var/log and name it with --log-root)", err))
	}
	if denied > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d processes skipped: their descriptors or namespaces cannot be read (run as root, or grant CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE and CAP_SYS_ADMIN)", denied))
	}
	// netnsOf[i] is s.Processes[i]'s namespace.
	var netnsOf []string
	for _, pids := range groups {
		// Each process is summarised as soon as it is read and its sockets
		// let go: a scan holds a batch of sockets, not the node's. ScanPIDs
		// hands processes over only once nothing can fail any more, so a
		// retry of the group (scanGroup) never counts one twice.
		ns, nsPID := NetnsStats{}, 0
		o.Each = func(p inspect.Process) {
			if len(p.Sockets) == 0 {
				return
			}
			maxIdle := eo.MaxIdle
			if view != nil {
				r := &inspect.Report{MaxIdleS: int(eo.MaxIdle / time.Second), Processes: []inspect.Process{p}}
				view.Apply(r)
				p = r.Processes[0]
				s.Notes = append(s.Notes, r.Notes...)
				// With --max-idle auto the limit is the process's own path's.
				maxIdle = time.Duration(r.MaxIdleS) * time.Second
			}
			if ns.Netns == "" {
				ns.Netns, nsPID = p.Netns, p.PID
			}
			s.Processes = append(s.Processes, summarise(&p, maxIdle))
			netnsOf = append(netnsOf, p.Netns)
		}
		r, err := scanGroup(pids, o, &s.Notes)
		if errors.Is(err, inspect.ErrNoInetDiag) {
			return nil, err
		}
		if err != nil {
			s.Notes = append(s.Notes, err.Error())
			continue
		}
		if ns.Netns != "" {
			n, err := keepaliveProbes(nsPID)
			if err != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("%s: keepalive probe counter unreadable: %v", ns.Netns, err))
			} else {
				ns.KeepaliveProbes = n
				s.Netns = append(s.Netns, ns)
			}
		}
		for _, n := range r.Notes {
			// Processes come and go; one that exits mid-scan is no problem.
			if !strings.Contains(n, "exited during the scan") {
				s.Notes = append(s.Notes, n)
			}
		}
	}
	identify(s, netnsOf, logs)
	sort.Slice(s.Processes, func(i, j int) bool { return s.Processes[i].PID < s.Processes[j].PID })
	s.Notes = unique(s.Notes)
	s.Duration = time.Since(start)
	return s, nil
}

// scanGroup scans the processes of one namespace. ScanPIDs fails as a
// whole when one process cannot be read; that process is left out with a
// note and the rest scanned again (a few times at most: each try dumps the
// namespace again). An error that names no process concerns the namespace.
func scanGroup(pids []int, o inspect.Options, notes *[]string) (*inspect.Report, error) {
	for try := 0; ; try++ {
		r, err := inspect.ScanPIDs(pids, o)
		if err == nil || errors.Is(err, inspect.ErrNoInetDiag) || try == 3 {
			return r, err
		}
		bad, ok := kproc.FailedPID(err)
		i := slices.Index(pids, bad)
		if !ok || i < 0 {
			return nil, err
		}
		*notes = append(*notes, err.Error())
		pids = slices.Delete(slices.Clone(pids), i, i+1)
		if len(pids) == 0 {
			return &inspect.Report{}, nil
		}
	}
}

func unique(notes []string) []string {
	seen := map[string]bool{}
	out := notes[:0]
	for _, n := range notes {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func summarise(p *inspect.Process, maxIdle time.Duration) ProcessStats {
	ps := ProcessStats{PID: p.PID, Comm: p.Comm, Sockets: map[inspect.Source]int{}}
	for j := range p.Sockets {
		sk := &p.Sockets[j]
		ps.Sockets[sk.Keepalive.Source]++
		if sk.State == "ESTABLISHED" {
			ps.Established++
			idle := time.Duration(min(sk.LastDataRecvMs, sk.LastAckRecvMs)) * time.Millisecond
			if (sk.Verdict == inspect.AtRisk || sk.Verdict == inspect.Dead) && !sk.Keepalive.Enabled && idle > maxIdle {
				ps.IdleKeepaliveOff++
			}
		}
		if sk.Verdict == inspect.Dead {
			ps.Dead++
		}
		if sk.Verdict == inspect.AtRisk {
			if sk.Keepalive.Enabled {
				ps.AtRiskIdleTooLong++
			} else {
				ps.AtRiskKeepaliveOff++
			}
		}
	}
	return ps
}

// identify names each process's pod and container and checks whether it
// maps the preload library, on every CPU (two /proc reads per process),
// then names each namespace by the first of its processes in a pod.
func identify(s *Snapshot, netnsOf []string, logs *pod.Logs) {
	parallel.For(len(s.Processes), func(i int) {
		ps := &s.Processes[i]
		if c, err := pod.ReadCgroup(ps.PID); err == nil {
			ps.Pod = logs.Identify(c)
		}
		ps.PreloadMapped = preloadMapped(ps.PID)
	})
	index := make(map[string]int, len(s.Netns))
	for i, n := range s.Netns {
		index[n.Netns] = i
	}
	for i, ps := range s.Processes {
		if n, ok := index[netnsOf[i]]; ok && ps.Pod.Pod != "" && s.Netns[n].Pod.Name == "" {
			s.Netns[n].Pod = podRef{ps.Pod.Namespace, ps.Pod.Pod}
		}
	}
}

// pidsByNetns lists every process but this one, grouped by network
// namespace. Processes whose namespace cannot be read are counted.
func pidsByNetns() ([][]int, int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, 0, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, 0, err
	}
	self := os.Getpid()
	byNs := map[uint64][]int{}
	var order []uint64
	denied := 0
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(procRoot+"/"+n+"/ns/net", &st); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				denied++
			}
			continue
		}
		// Without the right to list its descriptors (another user's
		// process, no CAP_DAC_READ_SEARCH) a process would fail its whole
		// namespace's scan: leave it out here.
		if err := unix.Faccessat(unix.AT_FDCWD, procRoot+"/"+n+"/fd", unix.R_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				denied++
			}
			continue
		}
		if _, ok := byNs[st.Ino]; !ok {
			order = append(order, st.Ino)
		}
		byNs[st.Ino] = append(byNs[st.Ino], pid)
	}
	out := make([][]int, 0, len(order))
	for _, ino := range order {
		out = append(out, byNs[ino])
	}
	return out, denied, nil
}
