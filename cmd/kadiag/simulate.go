package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/shlex"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/kadiag/kadiag/simulate"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newSimulateCmd) }

type simulateFlags struct {
	preset, idle, after          string
	responseDelay, serverKeep    string
	scenarios                    []string
	scale                        float64
	keepidle, keepintvl, timeout string
	keepcnt                      int
	ipv6, withPreload, keepRoot  bool
	pcap, expect                 string
	benchLabs                    int
	hops                         []string
	server                       string
}

// simulateHook, when set, becomes simulate.Config.Hook: only the tests set
// it (TestMain), to hold a run at a phase; the product never does.
var simulateHook func(ctx context.Context, p simulate.Phase, s *simulate.Stage)

func newSimulateCmd() *cobra.Command { return simulateCmd(&simulateFlags{}) }

// simulateCmd binds the command's flags to f.
func simulateCmd(f *simulateFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simulate [flags] [-- CMD ARGS...]",
		Short: "A lab with a middlebox that forgets idle flows: the hang, and the fix",
		Long: `simulate builds a lab of three network namespaces (client, middlebox,
server) in which the middlebox forgets a TCP flow idle longer than --idle,
as a cloud NAT gateway or load balancer does, and shows side by side which
clients survive a server that answers after the flow was forgotten:

  none              the bundled client, keepalive off                 fails
  preload           the same client with the bundled keepalive library   ok
  sysctl            tcp_keepalive_time lowered, SO_KEEPALIVE still off    fails
  app               the client turns keepalive on itself                 ok
  preload-too-slow  the library with an idle above the middlebox's     fails
On request (--scenario), with kadiag fix's capabilities:
  fix-live          keepalive off, kadiag fix --pid before it is forgotten  ok
  fix-live-late     the same, fixed after: fails at once, does not hang   fails
  fix-cgroup        keepalive off, in a cgroup with kadiag fix's programs   ok

With -- CMD ARGS, your own command runs in the client namespace instead,
with the server's URL in $KADIAG_URL and in place of {url}; --expect says
whether it should survive (ok) or not (fail). --server "CMD ARGS" runs your
own server instead of the built-in one ({listen} and $KADIAG_LISTEN say
where it must listen).

--hop SPEC (repeatable, client side first) builds a chain of middleboxes, a
namespace each with its own conntrack table: a preset (aws-nat), settings
(idle=8s,after=drop,nat=no), or a named chain (eks-nat, eks-nlb). The report
names the hop that forgot the flow first.

Needs root (network namespaces). Nothing on the host changes, and nothing
outlives kadiag, not even when it is killed.`,
		Example: `  kadiag simulate --preset aws-nat --scale 35
  kadiag simulate --idle 350s --after drop --scenario none,preload
  kadiag simulate --idle 350s --scale 35 --preload --expect ok -- curl -sS --no-keepalive {url}
  kadiag simulate --hop eks-nat --scale 35 --scenario none,preload
  kadiag simulate --hop idle=8s,after=heal --hop idle=4s,after=drop --scenario none,app
  kadiag simulate --preset aws-nat --scale 35 --server 'python3 slow.py {listen}' -- java -jar client.jar {url}`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSimulate(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.preset, "preset", "", "middlebox preset: "+presetList()+" (explicit flags override)")
	fl.StringVar(&f.idle, "idle", "", "the middlebox's idle timeout, e.g. 350s or a preset name (default 350s, AWS NAT Gateway)")
	fl.StringVar(&f.after, "after", "", "what the middlebox does after expiry: reset (RST to the inside host), drop (silent) or heal (Linux loose conntrack)")
	fl.StringVar(&f.responseDelay, "response-delay", "", "how long the server works before answering (default idle + 30s)")
	fl.StringVar(&f.serverKeep, "server-keepalive", "", "the server probes on its own every D (its probes refresh the middlebox too)")
	fl.StringSliceVar(&f.scenarios, "scenario", nil, "scenarios to run, comma-separated: "+strings.Join(simulate.Scenarios(), ",")+" (default: all but the fix-* ones, which need kadiag fix's capabilities: CAP_BPF, CAP_SYS_PTRACE)")
	fl.StringArrayVar(&f.hops, "hop", nil, "a middlebox of a chain, client side first (repeat): a preset ("+presetList()+"), idle=D,after=reset|drop|heal,nat=yes|no, or a chain ("+chainList()+")")
	fl.StringVar(&f.server, "server", "", "run your own server (one string: \"CMD ARGS\", split as a shell would, run without one) instead of the built-in one; it must listen on {listen} ($KADIAG_LISTEN)")
	fl.Float64Var(&f.scale, "scale", 1, "divide every duration kadiag controls by N (the kernel's 1 s minimum applies)")
	fl.StringVar(&f.keepidle, "keepidle", "", "keepalive idle of the preload/sysctl/app scenarios and of --preload (default min(60s, idle/2))")
	fl.StringVar(&f.keepintvl, "keepintvl", "", "keepalive interval (default min(15s, keepidle))")
	fl.IntVar(&f.keepcnt, "keepcnt", 0, "keepalive probes before giving up (default 4)")
	fl.StringVar(&f.timeout, "timeout", "", "give up on a client or CMD after D of wall-clock time, not scaled (default response delay + 10%, at least 5s)")
	fl.BoolVar(&f.ipv6, "ipv6", false, "the client dials the server's IPv6 address (both families are NATed)")
	fl.StringVar(&f.pcap, "pcap", "", "write the client links' packets to FILE (pcapng, one interface per scenario)")
	fl.BoolVar(&f.withPreload, "preload", false, "run CMD with the bundled keepalive library")
	fl.StringVar(&f.expect, "expect", "ok", "what CMD should show: ok (it survives) or fail")
	fl.BoolVar(&f.keepRoot, "keep-root", false, "run CMD as root even under sudo (default: as the user who ran sudo, from SUDO_UID/SUDO_GID)")
	fl.IntVar(&f.benchLabs, "bench-labs", 0, "build and tear down N bare labs, print the mean time per lab (benchmark)")
	fl.MarkHidden("bench-labs")
	return cmd
}

func presetList() string {
	var n []string
	for _, p := range middlebox.Presets() {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

func chainList() string {
	var n []string
	for _, c := range middlebox.Chains() {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

func runSimulate(cmd *cobra.Command, f *simulateFlags, args []string) error {
	cfg, err := simulateConfig(cmd, f, args)
	if err != nil {
		return usageError{err: err, cmd: cmd}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.benchLabs > 0 {
		mean, err := simulate.BenchLabs(ctx, f.benchLabs, cfg.Hops)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%.3f ms per lab up+down (%d labs)\n", float64(mean)/float64(time.Millisecond), f.benchLabs)
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	stopProgress := simulateProgress(cmd, &cfg)
	res, err := simulate.Run(ctx, cfg)
	stopProgress()
	if res == nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "kadiag: warning: %s\n", w)
	}
	// A run whose evidence file failed still reports what the lab showed;
	// the exit code is then 2, for the file.
	if rerr := render(cmd, reports.Simulate{Result: res}); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if !res.Passed() {
		return errCheckFailed
	}
	return nil
}

func simulateConfig(cmd *cobra.Command, f *simulateFlags, args []string) (simulate.Config, error) {
	var cfg simulate.Config
	changed := cmd.Flags().Changed
	if f.preset != "" {
		p, err := middlebox.Lookup(f.preset)
		if err != nil {
			return cfg, err
		}
		cfg.Preset, cfg.Idle, cfg.After = p.Name, p.Idle, p.After
	}
	if f.idle != "" {
		d, err := middlebox.ParseIdle(f.idle)
		if err != nil {
			return cfg, fmt.Errorf("--idle: %w", err)
		}
		if p, err := middlebox.Lookup(f.idle); err == nil && f.preset == "" {
			cfg.Preset, cfg.After = p.Name, p.After
		}
		cfg.Idle = d
	}
	if f.after != "" {
		cfg.After = middlebox.AfterExpiry(f.after)
	}
	if len(f.hops) > 0 {
		if f.preset != "" || f.idle != "" || f.after != "" {
			return cfg, fmt.Errorf("--hop and --preset, --idle or --after exclude each other: give each hop its own settings (--hop aws-nat or --hop idle=350s,after=reset)")
		}
		for _, spec := range f.hops {
			if hops, err := middlebox.LookupChain(spec); err == nil {
				if len(f.hops) == 1 {
					cfg.Chain = spec
				}
				cfg.Hops = append(cfg.Hops, hops...)
				continue
			}
			h, err := middlebox.ParseHop(spec)
			if err != nil {
				return cfg, fmt.Errorf("--hop: %w", err)
			}
			cfg.Hops = append(cfg.Hops, h)
		}
	}
	if f.server != "" {
		words, err := shlex.Split(f.server)
		if err != nil || len(words) == 0 {
			return cfg, fmt.Errorf("--server %q: not a command (use e.g. --server 'python3 slow.py {listen}')", f.server)
		}
		cfg.Server = words
		cfg.Stderr = cmd.ErrOrStderr()
	}
	cfg.Hook = simulateHook
	dur := func(name, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := middlebox.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("--%s: %w", name, err)
		}
		return d, nil
	}
	var err error
	if cfg.ResponseDelay, err = dur("response-delay", f.responseDelay); err != nil {
		return cfg, err
	}
	cfg.ResponseDelaySet = changed("response-delay")
	if cfg.ServerKeepalive, err = dur("server-keepalive", f.serverKeep); err != nil {
		return cfg, err
	}
	if cfg.KeepIdle, err = dur("keepidle", f.keepidle); err != nil {
		return cfg, err
	}
	if cfg.KeepIntvl, err = dur("keepintvl", f.keepintvl); err != nil {
		return cfg, err
	}
	if cfg.Timeout, err = dur("timeout", f.timeout); err != nil {
		return cfg, err
	}
	if changed("keepidle") && cfg.KeepIdle < time.Second || changed("keepintvl") && cfg.KeepIntvl < time.Second {
		return cfg, fmt.Errorf("--keepidle and --keepintvl must be at least 1s (the kernel's unit)")
	}
	cfg.KeepCnt = f.keepcnt
	cfg.Scale = f.scale
	cfg.Scenarios = f.scenarios
	cfg.IPv6 = f.ipv6
	cfg.PcapPath = f.pcap
	if len(args) > 0 {
		if changed("scenario") {
			return cfg, fmt.Errorf("--scenario and a command (after --) exclude each other: the command is the scenario")
		}
		cfg.Command = args
		cfg.WithPreload = f.withPreload
		cfg.Expect = f.expect
		cfg.KeepRoot = f.keepRoot
		cfg.Stdout, cfg.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
		if global.output != string(reports.Table) {
			// Keep the JSON or JUnit document on stdout parseable.
			cfg.Stdout = cmd.ErrOrStderr()
		}
	} else if f.withPreload || changed("expect") || f.keepRoot {
		return cfg, fmt.Errorf("--preload, --expect and --keep-root apply to a command: kadiag simulate [flags] -- CMD ARGS")
	}
	if f.withPreload || (len(args) == 0 && f.benchLabs == 0) {
		lib, err := preloadLibrary(len(args) == 0)
		if err != nil && (f.withPreload || needsLibrary(cfg.Scenarios)) {
			return cfg, err
		}
		cfg.Library = lib
	}
	return cfg, nil
}

func needsLibrary(scenarios []string) bool {
	if len(scenarios) == 0 {
		scenarios = simulate.Scenarios()
	}
	for _, name := range scenarios {
		if s, ok := simulate.LookupScenario(name); ok && s.Library {
			return true
		}
	}
	return false
}
