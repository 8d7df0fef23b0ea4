package simulate

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/preload"
)

// labRun is one client in one lab: a built-in scenario or the user's
// command.
type labRun struct {
	name     string
	expected string
	cmd      func(url string) *exec.Cmd
	port     int       // the lab server's port
	sc       *Scenario // nil for a user command
	bundled  bool      // the bundled client: its exit status is the outcome
	pidns    bool      // a PID namespace of its own, so nothing it forks survives
	backstop time.Duration
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

// scenarioRun is a built-in scenario's client: the bundled one at bin.
func scenarioRun(sc *Scenario, t Timings, bin string, lib *os.File) labRun {
	r := labRun{name: sc.Name, expected: sc.Expect, port: scenarioPort(sc.Name), sc: sc, bundled: true, backstop: t.Timeout + 3*time.Second}
	var args, env []string
	if sc.Client != nil {
		e := ClientEnv{Timings: t}
		if sc.Library && lib != nil {
			e.Library = memPath(lib)
		}
		args, env = sc.Client(e)
	}
	env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	args = append(append([]string(nil), args...), "-t", strconv.FormatInt(t.Timeout.Milliseconds(), 10))
	r.cmd = func(url string) *exec.Cmd {
		cmd := exec.Command(bin, append(args, url)...)
		cmd.Args[0] = "kadiag-client"
		cmd.Env = env
		return cmd
	}
	return r
}

// commandRun is the user's command as the lab's client.
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
