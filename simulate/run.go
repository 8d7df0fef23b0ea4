package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/internal/atomicfile"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/preload"
	"github.com/kadiag/kadiag/simulate/client"
	"github.com/prometheus/procfs"
)

// ErrNotPrivileged is returned when kadiag may not build namespaces.
var ErrNotPrivileged = errors.New("kadiag simulate needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW) to build its network namespaces and capture in them: run it with sudo")

// checkPrivilege reads the effective capabilities instead of the uid, so a
// container given CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN works and a root without
// them gets the one-line answer rather than an EPERM from deep inside.
func checkPrivilege() error {
	self, err := procfs.Self()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	st, err := self.NewStatus()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	// CAP_NET_RAW: every lab captures its client links (AF_PACKET).
	const netAdmin, netRaw, sysAdmin = 1 << 12, 1 << 13, 1 << 21
	if st.CapEff&netAdmin == 0 || st.CapEff&netRaw == 0 || st.CapEff&sysAdmin == 0 {
		return ErrNotPrivileged
	}
	return nil
}

// labRun is one client in one lab.
type labRun struct {
	name     string
	expected string
	cmd      func(url string) *exec.Cmd
	port     int         // the lab server's port
	sysctls  [][2]string // for the client namespace
	bundled  bool        // the bundled client: its exit status is the outcome
	pidns    bool        // a PID namespace of its own, so nothing it forks survives
	backstop time.Duration
}

// Run builds a lab per scenario (or one for the user command), runs them in
// parallel and returns what each showed. An error means the lab itself
// failed; a scenario that did not meet its expectation is in the Result.
// When only the --pcap file could not be written (a full disk after a long
// run), Run returns the Result and that error (wrapping ErrPcap).
func Run(parent context.Context, cfg Config) (*Result, error) {
	ctx := parent
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
	res := &Result{
		Schema: Schema, IdleS: cfg.Idle.Seconds(), After: string(cfg.After), Scale: cfg.Scale,
		Preset: cfg.Preset, LabIdleS: t.Idle.Seconds(), ResponseDelayS: t.ResponseDelay.Seconds(),
		KeepIdleS: t.KeepIdle.Seconds(), KeepIntvlS: t.KeepIntvl.Seconds(), KeepCnt: t.KeepCnt,
		SlowKeepIdleS: t.SlowKeepIdle.Seconds(), TimeoutS: t.Timeout.Seconds(),
		Family: "ipv4", Command: cfg.Command, Warnings: warnings, Scenarios: []ScenarioResult{},
	}
	if cfg.IPv6 {
		res.Family = "ipv6"
	}

	var runs []labRun
	var lib *os.File
	if cfg.WithPreload || (len(cfg.Command) == 0 && cfg.needsLibrary()) {
		var err error
		if lib, err = memFile("libkadiag_keepalive.so", cfg.Library); err != nil {
			return nil, err
		}
		defer lib.Close()
	}
	if len(cfg.Command) > 0 {
		who, err := invokingUser(cfg.KeepRoot)
		if err != nil {
			return nil, err
		}
		runs = append(runs, commandRun(&cfg, t, lib, who))
	} else {
		exe, err := client.Binary("")
		if err != nil {
			return nil, err
		}
		bin, err := memFile("kadiag-client", exe)
		if err != nil {
			return nil, err
		}
		defer bin.Close()
		for _, name := range cfg.Scenarios {
			runs = append(runs, scenarioRun(name, t, memPath(bin), lib))
		}
	}

	// One lab failing to build ends the others: the run is an error anyway.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]ScenarioResult, len(runs))
	packets := make([][]capturedPacket, len(runs))
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], packets[i], errs[i] = runInLab(ctx, &cfg, t, r)
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
	for i := range results {
		results[i].Evidence = sentence(&cfg, t, &results[i])
		res.Scenarios = append(res.Scenarios, results[i])
		res.Summary.Scenarios++
		if results[i].Passed {
			res.Summary.Passed++
		}
	}
	if cfg.PcapPath != "" {
		names := make([]string, len(runs))
		for i, r := range runs {
			names[i] = r.name
		}
		if err := writePcap(cfg.PcapPath, names, packets); err != nil {
			// The lab's findings stand without the capture: return both.
			return res, err
		}
		res.Pcap = cfg.PcapPath
	}
	return res, nil
}

// preloadEnv is the environment that loads the library with these
// keepalive values, as the preload package spells it for every user.
func preloadEnv(lib string, idle, intvl time.Duration, cnt int) []string {
	vars, err := preload.Env(lib, preload.Config{Idle: idle, Interval: intvl, Count: cnt})
	if err != nil {
		// Timings are whole seconds within Linux's limits (Validate), and
		// lib is a /proc path: this cannot happen.
		panic(fmt.Sprintf("preload environment: %v", err))
	}
	var env []string
	for _, v := range vars {
		env = append(env, v.Name+"="+v.Value)
	}
	return env
}

func scenarioRun(name string, t Timings, bin string, lib *os.File) labRun {
	r := labRun{name: name, expected: expected[name], port: scenarioPort(name), bundled: true, backstop: t.Timeout + 3*time.Second}
	var args, env []string
	env = []string{"PATH=/usr/bin:/bin"}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
	switch name {
	case Preload:
		env = append(env, preloadEnv(memPath(lib), t.KeepIdle, t.KeepIntvl, t.KeepCnt)...)
	case PreloadTooSlow:
		env = append(env, preloadEnv(memPath(lib), t.SlowKeepIdle, t.KeepIntvl, t.KeepCnt)...)
	case Sysctl:
		// The Kubernetes-sysctl myth: the timings change, SO_KEEPALIVE stays off.
		r.sysctls = [][2]string{
			{"net/ipv4/tcp_keepalive_time", secs(t.KeepIdle)},
			{"net/ipv4/tcp_keepalive_intvl", secs(t.KeepIntvl)},
			{"net/ipv4/tcp_keepalive_probes", strconv.Itoa(t.KeepCnt)},
		}
	case App:
		args = append(args, "-k", "-i", secs(t.KeepIdle), "-n", secs(t.KeepIntvl), "-c", strconv.Itoa(t.KeepCnt))
	}
	args = append(args, "-t", strconv.FormatInt(t.Timeout.Milliseconds(), 10))
	r.cmd = func(url string) *exec.Cmd {
		cmd := exec.Command(bin, append(args, url)...)
		cmd.Args[0] = "kadiag-client"
		cmd.Env = env
		return cmd
	}
	return r
}

func commandRun(cfg *Config, t Timings, lib *os.File, who identity) labRun {
	r := labRun{name: "command", expected: cfg.Expect, port: ServerPort, pidns: true, backstop: t.Timeout}
	r.cmd = func(url string) *exec.Cmd {
		args := make([]string, len(cfg.Command))
		for i, a := range cfg.Command {
			args[i] = strings.ReplaceAll(a, "{url}", url)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(append(os.Environ(), who.env...), "KADIAG_URL="+url)
		if who.cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: who.cred}
		}
		if cfg.WithPreload {
			path := memPath(lib)
			if who.cred != nil {
				// Another user may not look into kadiag's /proc/PID/fd: hand
				// the library over as the command's own descriptor 3.
				cmd.ExtraFiles = []*os.File{lib}
				path = "/proc/self/fd/3"
			}
			cmd.Env = append(cmd.Env, preloadEnv(path, t.KeepIdle, t.KeepIntvl, t.KeepCnt)...)
		}
		cmd.Stdin = nil
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
		return cmd
	}
	return r
}

// runInLab builds a lab, starts the server, the evidence collectors and
// the client, and tears it all down again, whatever happens.
func runInLab(ctx context.Context, cfg *Config, t Timings, r labRun) (sr ScenarioResult, pkts []capturedPacket, err error) {
	sr = ScenarioResult{Name: r.name, Expected: r.expected, Conntrack: []ConntrackEvent{}}
	lab, err := NewLab(LabConfig{Idle: t.Idle, After: cfg.After})
	if err != nil {
		return sr, nil, err
	}
	defer lab.Close()
	srv, err := startServer(lab.Server, ServerConfig{Port: r.port, ResponseDelay: t.ResponseDelay, Keepalive: t.ServerKeep})
	if err != nil {
		return sr, nil, err
	}
	defer srv.Close()
	if len(r.sysctls) > 0 {
		if err := writeSysctls(lab.Client, r.sysctls); err != nil {
			return sr, nil, err
		}
	}
	ct, err := watchConntrack(lab.Middlebox)
	if err != nil {
		return sr, nil, err
	}
	capt, err := startCapture(lab.Client, clientLinkIf)
	if err != nil {
		ct.stop(time.Now())
		return sr, nil, err
	}

	testPause(ctx, "setup")
	cmd := r.cmd(serverURL(cfg.IPv6, r.port))
	var out, errOut bytes.Buffer
	if r.bundled {
		cmd.Stdout, cmd.Stderr = &out, &errOut
	}
	if r.pidns {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	}
	start := time.Now()
	if err := startIn(lab.Client, cmd); err != nil {
		capt.stop()
		ct.stop(start)
		return sr, nil, fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(r.backstop)
	defer timer.Stop()
	var waitErr error
	killed, interrupted := false, false
	select {
	case waitErr = <-waited:
	case <-timer.C:
		killed = true
		killGroup(cmd)
		waitErr = <-waited
	case <-ctx.Done():
		interrupted = true
		killGroup(cmd)
		waitErr = <-waited
	}
	end := time.Now()
	killGroup(cmd) // whatever it left running in its group
	pkts = capt.stop()
	sr.Conntrack = ct.stop(start)
	testPause(ctx, "teardown")
	if interrupted {
		return sr, nil, ctx.Err()
	}
	sr.ElapsedS = round3(end.Sub(start).Seconds())
	ws := analyze(pkts, start, t.Idle, end)
	sr.Packets, sr.Probes, sr.ProbeAcks, sr.Resets, sr.ExpiredS = ws.packets, ws.probes, ws.probeAcks, ws.rsts, ws.expiredAt
	sr.Wire = ws.events
	if sr.ExpiredS != nil {
		v := round3(*sr.ExpiredS)
		sr.ExpiredS = &v
	}
	sr.ExitCode = cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return sr, nil, fmt.Errorf("wait for %s: %w", cmd.Args[0], waitErr)
	}
	switch {
	case r.bundled:
		sr.Client = strings.TrimSpace(out.String())
		sr.Socket = strings.TrimPrefix(strings.TrimSpace(errOut.String()), "kadiag-client: ")
		switch {
		case killed:
			sr.Outcome = OutcomeTimeout
		case sr.ExitCode == client.ExitOK:
			sr.Outcome = OutcomeOK
		case sr.ExitCode == client.ExitTimeout || sr.ExitCode == client.ExitDead:
			sr.Outcome = OutcomeTimeout
		case sr.ExitCode == client.ExitReset:
			sr.Outcome = OutcomeReset
		default:
			sr.Outcome = OutcomeError
		}
	default:
		switch {
		case killed:
			sr.Outcome = OutcomeTimeout
			sr.Client = fmt.Sprintf("killed at --timeout %s", t.Timeout)
		case sr.ExitCode == 0:
			sr.Outcome = OutcomeOK
			sr.Client = "exit status 0"
		case sr.Resets > 0:
			sr.Outcome = OutcomeReset
			sr.Client = fmt.Sprintf("exit status %d", sr.ExitCode)
		default:
			sr.Outcome = OutcomeFailed
			sr.Client = fmt.Sprintf("exit status %d", sr.ExitCode)
		}
	}
	switch sr.Expected {
	case ExpectOK:
		sr.Passed = sr.Outcome == OutcomeOK
	case ExpectFail:
		sr.Passed = sr.Outcome == OutcomeTimeout || sr.Outcome == OutcomeReset || sr.Outcome == OutcomeFailed
	}
	return sr, pkts, nil
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}

// sentence says in one line what a scenario showed and why.
func sentence(cfg *Config, t Timings, sr *ScenarioResult) string {
	var who string
	switch sr.Name {
	case None:
		who = "without keepalive"
	case Preload:
		who = fmt.Sprintf("with the library (idle %s)", t.KeepIdle)
	case Sysctl:
		who = fmt.Sprintf("tcp_keepalive_time=%d in the client netns but SO_KEEPALIVE off", int(t.KeepIdle.Seconds()))
	case App:
		who = fmt.Sprintf("keepalive set by the application (idle %s)", t.KeepIdle)
	case PreloadTooSlow:
		who = fmt.Sprintf("with the library but idle %s, longer than the middlebox's %s", t.SlowKeepIdle, t.Idle)
	default:
		who = strings.ReplaceAll(strings.Join(cfg.Command, " "), "\n", `\n`)
		if r := []rune(who); len(r) > 60 {
			who = string(r[:57]) + "..."
		}
		if cfg.WithPreload {
			who += fmt.Sprintf(" with the library (idle %s)", t.KeepIdle)
		}
	}
	el := fmt.Sprintf("%.1fs", sr.ElapsedS)
	var what string
	switch sr.Outcome {
	case OutcomeOK:
		if sr.Name == "command" {
			what = "exited 0 after " + el
		} else {
			what = "200 OK after " + el
		}
	case OutcomeTimeout:
		what = "no response after " + el
	case OutcomeReset:
		what = "reset after " + el
	case OutcomeFailed:
		what = fmt.Sprintf("exited %d after %s", sr.ExitCode, el)
	default:
		what = fmt.Sprintf("client error after %s (%s)", el, sr.Client)
	}
	what += fmt.Sprintf(", %d probe%s", sr.Probes, plural(sr.Probes))
	var why, at string
	if sr.ExpiredS != nil {
		at = fmt.Sprintf("%.1fs", *sr.ExpiredS)
		if cfg.Scale > 1 {
			// Say it in the user's time too: the lab's 10 s are AWS's 350 s.
			at += fmt.Sprintf(" (%s unscaled)", (time.Duration(*sr.ExpiredS*cfg.Scale) * time.Second).Round(time.Second))
		}
	}
	switch {
	case sr.ExpiredS != nil && sr.Outcome == OutcomeReset:
		why = fmt.Sprintf(" — the middlebox forgot the flow at %s and answered the next packet with RST", at)
	case sr.ExpiredS != nil && cfg.After == middlebox.Heal && sr.Outcome == OutcomeOK:
		why = fmt.Sprintf(" — the middlebox forgot the flow at %s, and a late packet re-created it (loose conntrack)", at)
	case sr.ExpiredS != nil:
		why = fmt.Sprintf(" — the middlebox forgot the flow at %s", at)
	case sr.Outcome == OutcomeOK && sr.Probes > 0:
		why = " — the probes kept the flow alive"
	}
	return who + ": " + what + why
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// testPause lets the tests kill kadiag at a known point of a lab's life:
// with KADIAG_TEST_PAUSE=setup (lab built, client not started) or
// teardown (client done, lab not yet released) kadiag says so on stderr and
// waits there, until interrupted. It is not a user feature.
func testPause(ctx context.Context, phase string) {
	if os.Getenv("KADIAG_TEST_PAUSE") == phase {
		fmt.Fprintf(os.Stderr, "kadiag: test pause %s\n", phase)
		// Ctrl-C ends the pause like any other wait, so signal tests see
		// the real shutdown path from this phase.
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
		}
	}
}

// interruptedError is the run's error after Ctrl-C or SIGTERM; it wraps the
// context's error, so errors.Is(err, context.Canceled) holds.
type interruptedError struct{ cause error }

func (e *interruptedError) Error() string { return "interrupted: the labs are torn down" }

func (e *interruptedError) Unwrap() error { return e.cause }
