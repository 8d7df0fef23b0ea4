package simulate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/kadiag/kadiag/internal/atomicfile"
	"github.com/kadiag/kadiag/simulate/client"
)

// Run builds a lab per scenario (or one for the user command), runs them in
// parallel and returns what each showed. An error means the lab itself
// failed; a scenario that did not meet its expectation is in the Result.
// When only the --pcap file could not be written (a full disk after a long
// run), Run returns the Result and that error (wrapping ErrPcap).
func Run(parent context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkPrivilege(); err != nil {
		return nil, err
	}
	if cfg.PcapPath != "" {
		// Find out now, not after minutes of lab time, that the file
		// cannot be written.
		f, err := atomicfile.Create(cfg.PcapPath, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w (does the directory %s exist and is it writable?)", ErrPcap, cfg.PcapPath, atomicfile.Cause(err, cfg.PcapPath), filepath.Dir(cfg.PcapPath))
		}
		f.Abort()
	}
	t, warnings := cfg.Timings()
	res := newResult(&cfg, t, warnings)
	cfg.Stdout, cfg.Stderr = lockWriters(cfg.Stdout, cfg.Stderr)

	runs, cleanup, err := labRuns(&cfg, t)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	who, err := invokingUser(cfg.KeepRoot)
	if err != nil {
		return nil, err
	}

	// One lab failing to build ends the others: the run is an error anyway.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	evs := make([]labEvidence, len(runs))
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs[i], errs[i] = runInLab(ctx, &cfg, t, r, who)
			if errs[i] != nil {
				cancel()
				errs[i] = fmt.Errorf("%s: %w", r.name, errs[i])
			}
		}()
	}
	wg.Wait()
	var real []error
	for _, err := range errs {
		// A lab ended because another failed says nothing of its own.
		if err != nil && (!errors.Is(err, context.Canceled) || parent.Err() != nil) {
			real = append(real, err)
		}
	}
	if parent.Err() != nil {
		return nil, &interruptedError{context.Cause(parent)}
	}
	if err := errors.Join(real...); err != nil {
		return nil, err
	}
	for _, ev := range evs {
		res.Scenarios = append(res.Scenarios, ev.result)
		res.Summary.Scenarios++
		if ev.result.Passed {
			res.Summary.Passed++
		}
	}
	if cfg.PcapPath != "" {
		names, links := pcapInterfaces(runs, evs)
		if err := writePcap(cfg.PcapPath, names, links); err != nil {
			// The lab's findings stand without the capture: return both.
			return res, err
		}
		res.Pcap = cfg.PcapPath
	}
	return res, nil
}

// labRuns makes one labRun per scenario, or one for the user command, and
// returns what releases the memory files they run from.
func labRuns(cfg *Config, t Timings) ([]labRun, func(), error) {
	var files []*os.File
	cleanup := func() {
		for _, f := range files {
			f.Close()
		}
	}
	var lib *os.File
	if cfg.WithPreload || (len(cfg.Command) == 0 && cfg.needsLibrary()) {
		var err error
		if lib, err = memFile("libkadiag_keepalive.so", cfg.Library); err != nil {
			return nil, cleanup, err
		}
		files = append(files, lib)
	}
	if len(cfg.Command) > 0 {
		who, err := invokingUser(cfg.KeepRoot)
		if err != nil {
			cleanup()
			return nil, func() {}, err
		}
		return []labRun{commandRun(cfg, t, lib, who)}, cleanup, nil
	}
	exe, err := client.Binary("")
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	bin, err := memFile("kadiag-client", exe)
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	files = append(files, bin)
	var runs []labRun
	for _, name := range cfg.Scenarios {
		sc, _ := LookupScenario(name) // Validate checked the names
		runs = append(runs, scenarioRun(&sc, t, memPath(bin), lib))
	}
	return runs, cleanup, nil
}

// newResult is the run's header, before any lab ran.
func newResult(cfg *Config, t Timings, warnings []string) *Result {
	res := &Result{
		Schema: Schema, IdleS: cfg.Idle.Seconds(), After: string(cfg.After), Scale: cfg.Scale,
		Preset: cfg.Preset, Chain: cfg.Chain, LabIdleS: t.Idle.Seconds(), ResponseDelayS: t.ResponseDelay.Seconds(),
		KeepIdleS: t.KeepIdle.Seconds(), KeepIntvlS: t.KeepIntvl.Seconds(), KeepCnt: t.KeepCnt,
		SlowKeepIdleS: t.SlowKeepIdle.Seconds(), TimeoutS: t.Timeout.Seconds(),
		Family: "ipv4", Command: cfg.Command, Server: cfg.Server, Preload: cfg.WithPreload, Warnings: warnings, Scenarios: []ScenarioResult{},
	}
	for i, h := range cfg.chain() {
		res.Hops = append(res.Hops, HopConfig{Name: h.Name, IdleS: h.Idle.Seconds(), LabIdleS: t.Hops[i].Seconds(), After: string(h.After), NAT: h.NAT})
	}
	if cfg.IPv6 {
		res.Family = "ipv6"
	}
	return res
}

// pcapInterfaces names the captured links: one interface per scenario for a
// one-hop lab (the scenario's name), one per hop link for a chain
// ("none/2-aws-nat": the inside link of hop 2).
func pcapInterfaces(runs []labRun, evs []labEvidence) ([]string, [][]capturedPacket) {
	var names []string
	var links [][]capturedPacket
	for i, r := range runs {
		for j, pkts := range evs[i].links {
			name := r.name
			if len(evs[i].links) > 1 {
				name = fmt.Sprintf("%s/%d-%s", r.name, j+1, evs[i].result.Hops[j].Name)
			}
			names = append(names, name)
			links = append(links, pkts)
		}
	}
	return names, links
}

// interruptedError is the run's error after Ctrl-C or SIGTERM; it wraps the
// context's error, so errors.Is(err, context.Canceled) holds.
type interruptedError struct{ cause error }

func (e *interruptedError) Error() string { return "interrupted: the labs are torn down" }

func (e *interruptedError) Unwrap() error { return e.cause }
