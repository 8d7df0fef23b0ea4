package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/path"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newPathCmd) }

type pathFlags struct {
	token, min, max, precision string
	direction, keepalive       string
	expect                     string
	ipv6, ipv4                 bool
}

// tokenEnv holds the token when --token is not given, so it stays out of
// the process list.
const tokenEnv = "KADIAG_PATH_TOKEN"

func newPathCmd() *cobra.Command {
	f := &pathFlags{}
	cmd := &cobra.Command{
		Use:   "path HOST:PORT",
		Short: "How long the real path to HOST keeps an idle TCP flow, and what it does after",
		Long: `path measures the idle timeout of the network path to HOST:PORT: how long a
NAT gateway, load balancer or firewall on the way keeps an idle TCP flow,
per direction, and what it does after it forgot it (RST, silent drop, or
heal). Run 'kadiag path serve' on the far side first (a pod, a VM, the
server host); against any other TCP server only the to-server direction is
measured.

Connections for every idle of a log-spaced grid between --min and --max are
opened at the start and tested once each, so a timeout T is known after
about (1 + precision) × T. Ctrl-C reports what is known so far.`,
		Example: `  kadiag path serve --listen :7350 --token s3cret        # on the far side
  kadiag path 203.0.113.7:7350 --token s3cret --max 1h
  kadiag path 203.0.113.7:7350 --expect-at-least 10m -o junit --report path.json
  kadiag sockets --pid 4242 --max-idle @path.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{err: errors.New("give the far side as HOST:PORT (where 'kadiag path serve' listens)"), cmd: cmd}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runPath(cmd, f, args[0]) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.token, "token", "", "the counterpart's --token (default $"+tokenEnv+")")
	fl.StringVar(&f.min, "min", "10s", "shortest idle tested")
	fl.StringVar(&f.max, "max", "2h", "longest idle tested")
	fl.StringVar(&f.precision, "precision", "2%", "relative precision of the answer (grid step)")
	fl.StringVar(&f.direction, "direction", "both", "both, to-server (this side sends after the idle) or to-client (the far side does: a late reply)")
	fl.StringVar(&f.keepalive, "keepalive", "", "also check that TCP keepalive probes every D keep a flow alive past the timeout")
	fl.StringVar(&f.expect, "expect-at-least", "", "exit 1 when the path forgets idle flows sooner than D (the CI assertion)")
	fl.BoolVarP(&f.ipv6, "ipv6", "6", false, "dial over IPv6 only")
	fl.BoolVarP(&f.ipv4, "ipv4", "4", false, "dial over IPv4 only")
	cmd.AddCommand(newPathServeCmd())
	return cmd
}

func pathConfig(f *pathFlags, target string) (path.Config, *time.Duration, error) {
	cfg := path.Config{Target: target, Token: f.token}
	if cfg.Token == "" {
		cfg.Token = os.Getenv(tokenEnv)
	}
	var err error
	dur := func(name, v string) time.Duration {
		if err != nil || v == "" {
			return 0
		}
		d, e := middlebox.ParseDuration(v)
		if e != nil {
			err = fmt.Errorf("--%s: %w", name, e)
		}
		return d
	}
	cfg.Min, cfg.Max = dur("min", f.min), dur("max", f.max)
	cfg.Keepalive = dur("keepalive", f.keepalive)
	var expect *time.Duration
	if f.expect != "" {
		e := dur("expect-at-least", f.expect)
		expect = &e
	}
	if err != nil {
		return cfg, nil, err
	}
	if expect != nil && cfg.Max != 0 && cfg.Max < *expect {
		return cfg, nil, fmt.Errorf("--max %v is below --expect-at-least %v: the measurement could not show it", cfg.Max, *expect)
	}
	p := strings.TrimSpace(f.precision)
	pct := strings.HasSuffix(p, "%")
	v, perr := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
	if perr != nil || v <= 0 {
		return cfg, nil, fmt.Errorf("--precision %q: not a number: use a percentage such as %s or a fraction such as 0.02", f.precision, "2%")
	}
	if pct || v >= 1 {
		v /= 100
	}
	cfg.Precision = v
	switch f.direction {
	case "both", "":
	case string(path.ToServer), string(path.ToClient):
		cfg.Directions = []path.Direction{path.Direction(f.direction)}
	default:
		return cfg, nil, fmt.Errorf("--direction %q: both, to-server or to-client", f.direction)
	}
	switch {
	case f.ipv4 && f.ipv6:
		return cfg, nil, errors.New("--ipv4 and --ipv6 exclude each other")
	case f.ipv4:
		cfg.Network = "tcp4"
	case f.ipv6:
		cfg.Network = "tcp6"
	}
	return cfg, expect, nil
}

func runPath(cmd *cobra.Command, f *pathFlags, target string) error {
	cfg, expect, err := pathConfig(f, target)
	if err != nil {
		return usageError{err: err, cmd: cmd}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var last atomic.Pointer[path.Progress]
	cfg.Progress = func(p path.Progress) { last.Store(&p) }
	worst := cfg.Max
	if worst == 0 {
		worst = path.DefaultMax
	}
	stopProgress := startProgress(cmd, worst, func(time.Duration) string {
		p := last.Load()
		if p == nil {
			return "opening connections"
		}
		return pathProgress(p)
	})
	res, err := path.Measure(ctx, cfg)
	stopProgress()
	if res == nil {
		if errors.Is(err, path.ErrBadConfig) {
			return usageError{err: err, cmd: cmd}
		}
		return pathError(err, target)
	}
	if expect != nil {
		res.ExpectAtLeastS = new(expect.Seconds())
	}
	rep := reports.Path{Result: res}
	if rerr := render(cmd, rep); rerr != nil {
		return rerr
	}
	if expect != nil {
		if ok, known := res.ExpectPassed(*expect); known {
			if !ok {
				return errCheckFailed
			}
			if err == nil || errors.Is(err, context.Canceled) {
				return nil
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted after %.0fs: the report shows what was known", res.ElapsedS)
	case err != nil:
		return err
	case !rep.Passed():
		return errCheckFailed
	}
	return nil
}

// pathProgress is the live line: the bracket so far per direction and the
// time left at most.
func pathProgress(p *path.Progress) string {
	var parts []string
	for _, d := range []struct {
		n string
		r *path.DirectionResult
	}{{"to-client", p.Result.Directions.ToClient}, {"to-server", p.Result.Directions.ToServer}} {
		if d.r == nil {
			continue
		}
		lo := 0.0
		if d.r.BracketS[0] != nil {
			lo = *d.r.BracketS[0]
		}
		if d.r.BracketS[1] != nil {
			parts = append(parts, fmt.Sprintf("%s %.1f–%.1fs", d.n, lo, *d.r.BracketS[1]))
		} else {
			parts = append(parts, fmt.Sprintf("%s ≥ %.1fs", d.n, lo))
		}
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; at most %s left", reports.HumanDuration(p.Worst.Round(time.Second)))
}

// pathError names what went wrong and what to do.
func pathError(err error, target string) error {
	switch {
	case errors.Is(err, path.ErrRefused):
		return fmt.Errorf("%s: %w: pass the counterpart's --token (or $%s)", target, err, tokenEnv)
	case errors.Is(err, path.ErrBusy):
		return fmt.Errorf("%s: %w: narrow --min/--max, or raise the counterpart's --max-connections", target, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted before the measurement started")
	}
	return fmt.Errorf("%s: %w", target, err)
}

func newPathServeCmd() *cobra.Command {
	var (
		listen, token, hold string
		maxConns, perSource int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "The counterpart of 'kadiag path' on the far side of the path",
		Long: `serve is the far end of 'kadiag path': it holds the measuring client's
connections, sends on each after the idle the client asked for (timed from
the connection's last packet on this host's clock), answers the client's
late bytes, and notes what it saw. It never sends more than it was asked,
holds at most --max-connections (and half of them per client address), and
closes everything on SIGINT/SIGTERM. One log line per measurement.`,
		Example: `  kadiag path serve --listen :7350 --token s3cret`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := middlebox.ParseDuration(hold)
			if err != nil || d <= 0 {
				return usageError{err: fmt.Errorf("--max-hold %q: a positive duration such as 6h", hold), cmd: cmd}
			}
			if token == "" {
				token = os.Getenv(tokenEnv)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ln, err := path.Listen(ctx, listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kadiag path serve: listening on %s\n", ln.Addr())
			s := path.NewServer(path.ServeConfig{Token: token, MaxConnections: maxConns, MaxPerSource: perSource, MaxHold: d,
				Log: func(m path.Measurement) { fmt.Fprintln(out, reports.PathServeLine(m)) }})
			return s.Serve(ctx, ln)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", ":7350", "address to listen on")
	fl.StringVar(&token, "token", "", "clients must present this token (default $"+tokenEnv+")")
	fl.IntVar(&maxConns, "max-connections", path.DefaultMaxConnections, "connections held at most, in total")
	fl.IntVar(&perSource, "max-per-source", 0, "connections held at most per client address (default half of --max-connections)")
	fl.StringVar(&hold, "max-hold", "6h", "longest idle a client may ask for; every connection is closed after it")
	return cmd
}
