package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/middlebox"
)

// labEvidence is what one lab recorded: its scenario's result and every
// captured link (link i is hop i's inside link; link 0 the client's).
type labEvidence struct {
	result ScenarioResult
	links  [][]capturedPacket
}

// runInLab builds a lab, starts the server, the evidence collectors and
// the client, and tears it all down again, whatever happens.
func runInLab(ctx context.Context, cfg *Config, t Timings, r labRun, who identity) (ev labEvidence, err error) {
	sr := &ev.result
	*sr = ScenarioResult{Name: r.name, Expected: r.expected, Conntrack: []ConntrackEvent{}, Hops: []HopResult{}}
	chain := cfg.chain()
	hops := make([]middlebox.Hop, len(chain))
	for i, h := range chain {
		hops[i] = h
		hops[i].Idle = t.Hops[i]
	}
	lab, err := NewLab(ctx, LabConfig{Hops: hops})
	if err != nil {
		return ev, err
	}
	defer lab.Close()
	if len(cfg.Server) > 0 {
		out := cfg.Stderr
		if out == nil {
			out = io.Discard
		}
		srv, err := startUserServer(ctx, lab.Server(), cfg.Server, lab.ServerAddr(cfg.IPv6), r.port, who, out)
		if err != nil {
			return ev, err
		}
		defer srv.Close()
	} else {
		srv, err := startServer(lab.Server(), ServerConfig{Port: r.port, ResponseDelay: t.ResponseDelay, Keepalive: t.ServerKeep})
		if err != nil {
			return ev, err
		}
		defer srv.Close()
	}
	if r.sc != nil && r.sc.Sysctls != nil {
		if err := writeSysctls(lab.Client(), r.sc.Sysctls(t)); err != nil {
			return ev, err
		}
	}
	var watches []*conntrackWatch
	var capts []*capture
	// Whatever happens from here, the collectors stop before the lab goes.
	stopAll := func(start time.Time) {
		for i, c := range capts {
			if c != nil {
				ev.links = append(ev.links, c.stop())
				capts[i] = nil
			}
		}
		for i, w := range watches {
			if w != nil {
				events, notes := w.stop(start)
				sr.Hops = append(sr.Hops, HopResult{Conntrack: events})
				for _, n := range notes {
					sr.Notes = append(sr.Notes, fmt.Sprintf("hop %d (%s): %s", i+1, hops[i].Name, n))
				}
				watches[i] = nil
			}
		}
	}
	stopped := false
	defer func() {
		if !stopped {
			stopAll(time.Now())
		}
	}()
	for i := range hops {
		w, err := watchConntrack(lab.Hop(i), cfg.conntrackRcvbuf)
		if err != nil {
			return ev, fmt.Errorf("hop %d: %w", i+1, err)
		}
		watches = append(watches, w)
	}
	for i := range hops {
		ns, ifname := lab.Client(), clientLinkIf
		if i > 0 {
			ns, ifname = lab.Hop(i), insideIf
		}
		c, err := startCapture(ns, ifname)
		if err != nil {
			return ev, err
		}
		capts = append(capts, c)
	}

	cmd := r.cmd(serverURL(cfg.IPv6, r.port))
	stage := &Stage{Name: r.name, Lab: lab, Timings: t, Cmd: cmd}
	cfg.at(ctx, PhaseSetup, stage)
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
	if r.sc != nil && r.sc.Prepare != nil {
		cleanup, err := r.sc.Prepare(ctx, stage)
		if err != nil {
			return ev, fmt.Errorf("prepare: %w", err)
		}
		if cleanup != nil {
			defer cleanup()
		}
	}
	start := time.Now()
	if err := startIn(lab.Client(), cmd); err != nil {
		return ev, fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	stage.Pid, stage.Start = cmd.Process.Pid, start
	cfg.at(ctx, PhaseRunning, stage)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(r.backstop)
	defer timer.Stop()
	var during <-chan time.Time
	if r.sc != nil && r.sc.During != nil {
		at := time.Duration(0)
		if r.sc.At != nil {
			at = r.sc.At(t)
		}
		dt := time.NewTimer(at)
		defer dt.Stop()
		during = dt.C
	}
	var waitErr, hookErr error
	killed, interrupted := false, false
wait:
	for {
		select {
		case waitErr = <-waited:
			break wait
		case <-during:
			during = nil
			if hookErr = r.sc.During(ctx, stage); hookErr != nil {
				killGroup(cmd)
				waitErr = <-waited
				break wait
			}
		case <-timer.C:
			killed = true
			killGroup(cmd)
			waitErr = <-waited
			break wait
		case <-ctx.Done():
			interrupted = true
			killGroup(cmd)
			waitErr = <-waited
			break wait
		}
	}
	end := time.Now()
	killGroup(cmd) // whatever it left running in its group
	stopped = true
	stopAll(start)
	cfg.at(ctx, PhaseTeardown, stage)
	if interrupted {
		return ev, ctx.Err()
	}
	if hookErr != nil {
		return ev, fmt.Errorf("during the run: %w", hookErr)
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return ev, fmt.Errorf("wait for %s: %w", cmd.Args[0], waitErr)
	}
	sr.ElapsedS = round3(end.Sub(start).Seconds())
	var first *float64 // unrounded
	for i := range sr.Hops {
		h := &sr.Hops[i]
		h.Name, h.IdleS, h.LabIdleS, h.After, h.NAT = hops[i].Name, chain[i].Idle.Seconds(), t.Hops[i].Seconds(), string(hops[i].After), hops[i].NAT
		ws := analyze(ev.links[i], start, t.Hops[i], end)
		if ws.expiredAt != nil {
			v := round3(*ws.expiredAt)
			h.ForgotAtS = &v
		}
		if i == 0 {
			sr.Packets, sr.Probes, sr.ProbeAcks, sr.Resets = ws.packets, ws.probes, ws.probeAcks, ws.rsts
			sr.Wire = ws.events
			sr.Conntrack = h.Conntrack
		}
		if ws.expiredAt != nil && (first == nil || *ws.expiredAt < *first) {
			first, sr.ExpiredS = ws.expiredAt, h.ForgotAtS
			n := i + 1
			sr.ForgottenBy = &n
		}
	}
	sr.ExitCode = cmd.ProcessState.ExitCode()
	o := observation{bundled: r.bundled, killed: killed, exitCode: sr.ExitCode, resets: sr.Resets, timeout: t.Timeout}
	sr.Outcome, sr.Client = classify(o)
	if r.bundled {
		sr.Client = strings.TrimSpace(out.String())
		sr.Socket = strings.TrimPrefix(strings.TrimSpace(errOut.String()), "kadiag-client: ")
	}
	sr.Passed = meets(sr.Expected, sr.Outcome)
	return ev, nil
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}
