// Package exporter serves kadiag's node-wide socket scan to Prometheus. A
// scan loop reads every process's TCP sockets on its own interval (the
// `kadiag sockets --all` scan, one inet_diag dump per network namespace)
// and publishes the result as an immutable snapshot; scrapes render the
// last completed snapshot and never wait on, or trigger, a scan.
//
// Metrics are per process (labels pid, comm, container_id, pod_uid), never
// per socket, so their number is bounded by the processes holding TCP
// sockets, not by connections.
package exporter

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/middlebox"
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
}

// DefaultInterval is the scan interval when Options.Interval is zero.
const DefaultInterval = 30 * time.Second

// ProcessStats is what the exporter publishes about one process.
type ProcessStats struct {
	PID       int
	Comm      string
	Container Container
	// Established counts ESTABLISHED TCP connections, loopback ones included.
	Established int
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
	e := &Exporter{o: o, started: time.Now()}
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
	s, err := Scan(inspect.Options{MaxIdle: e.o.MaxIdle})
	e.scans.Add(1)
	e.lastEnd.Store(time.Now().UnixNano())
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

// Scan reads every process on the host once and summarises it per
// process.
func Scan(o inspect.Options) (*Snapshot, error) {
	start := time.Now()
	r, err := inspect.ScanAll(o)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Start: start, Processes: make([]ProcessStats, 0, len(r.Processes)), Notes: r.Notes}
	for i := range r.Processes {
		p := &r.Processes[i]
		ps := ProcessStats{PID: p.PID, Comm: p.Comm, Sockets: map[inspect.Source]int{}}
		for j := range p.Sockets {
			sk := &p.Sockets[j]
			ps.Sockets[sk.Keepalive.Source]++
			if sk.State == "ESTABLISHED" {
				ps.Established++
			}
			if sk.Verdict == inspect.AtRisk {
				if sk.Keepalive.Enabled {
					ps.AtRiskIdleTooLong++
				} else {
					ps.AtRiskKeepaliveOff++
				}
			}
		}
		ps.Container = readContainer(p.PID)
		ps.PreloadMapped = preloadMapped(p.PID)
		s.Processes = append(s.Processes, ps)
	}
	s.Duration = time.Since(start)
	return s, nil
}
