package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/exporter"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/nodebox"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newExporterCmd) }

func newExporterCmd() *cobra.Command {
	var (
		listen     string
		interval   time.Duration
		nf         nodeFlags
		perProcess bool
		logRoot    string
		webConfig  string
	)
	cmd := &cobra.Command{
		Use:   "exporter --listen ADDR",
		Short: "Serve node-wide keepalive risk as Prometheus metrics",
		Long: `exporter scans every process on the node every --interval (the scan of
'kadiag sockets --all': one inet_diag dump per network namespace, exact
options through pidfd_getfd) and serves the last completed scan at /metrics,
per container (labels namespace, pod, container, pod_uid, container_id; a
process outside any pod by comm; per process with --per-process):
established connections, connections at risk of a silent idle drop by
reason, keepalive-off connections already idle past --max-idle, sockets by
keepalive source, whether the preload library is mapped, connections a
--conntrack-netns NAT has already forgotten (dead); per network
namespace the keepalive probes sent; plus scan duration and scan errors.
Pod and container names come from the kubelet's log layout under
--log-root (pods/ and containers/), ids from each process's cgroup. Scrapes never trigger or wait
for a scan. /healthz (liveness) answers 200 while scans keep finishing;
/readyz (readiness) answers 200 once the first scan has completed.
--web.config.file serves TLS and basic auth (exporter-toolkit's format,
as node_exporter's): the metrics name every pod's processes.

Run it as root (or with CAP_SYS_PTRACE, CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH;
see docs/exporter.md). It stops cleanly on SIGINT or SIGTERM.`,
		Example: `  sudo kadiag exporter --listen :9977
  sudo kadiag exporter --listen 127.0.0.1:9977 --interval 15s --max-idle azure-lb
  sudo kadiag exporter --listen :9977 --web.config.file /etc/kadiag/web.yml
  sudo kadiag exporter --listen :9977 --max-idle auto,aws-nat`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			idle, nbo, err := nf.parse()
			if err != nil {
				return usageError{err: err, cmd: cmd}
			}
			if nbo != nil {
				// A declared namespace that cannot be read fails now, not
				// every scan.
				if _, err := nodebox.Read(*nbo); err != nil {
					return err
				}
			}
			if listen == "" {
				return usageError{err: errors.New("--listen is required (e.g. --listen :9977)"), cmd: cmd}
			}
			if interval < time.Second {
				return usageError{err: fmt.Errorf("--interval %s is too short: give 1s or more (e.g. 30s)", interval), cmd: cmd}
			}
			if err := exporter.CheckWebConfig(webConfig); err != nil {
				return fmt.Errorf("--web.config.file %s: %w (see docs/exporter.md, \"TLS and basic auth\")", webConfig, err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w (pick a free port)", listen, err)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			// A scan's garbage is a few times the heap between scans: a GC
			// target of 1.5x (not 2x) the live heap keeps a node agent's
			// peak RSS down for a few percent of one CPU. GOGC overrides.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(exporterGCPercent)
			}
			e := exporter.New(exporter.Options{Interval: interval, MaxIdle: idle, Logger: log, PerProcess: perProcess, LogRoot: logRoot, WebConfigFile: webConfig, Middleboxes: nbo})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("kadiag exporter listening", "addr", ln.Addr().String(), "interval", interval, "max_idle", idle)
			if err := e.Serve(ctx, ln); err != nil {
				return fmt.Errorf("exporter: %w", err)
			}
			log.Info("kadiag exporter stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to serve /metrics, /healthz and /readyz on, e.g. :9977 or 127.0.0.1:9977 (port 0 picks a free one, logged at start)")
	f.DurationVar(&interval, "interval", exporter.DefaultInterval, "time between node-wide scans (scrapes never trigger a scan)")
	nf.add(f)
	f.BoolVar(&perProcess, "per-process", false, "one series set per process (pid and comm labels) instead of per container: cardinality grows with processes")
	addLogRootFlag(f, &logRoot)
	f.StringVar(&webConfig, "web.config.file", "", "TLS and basic auth for the endpoint: an exporter-toolkit web configuration file, as node_exporter takes (docs/exporter.md)")
	cmd.RegisterFlagCompletionFunc("max-idle", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		out := []string{"auto\tthe smallest conntrack or IPVS timeout this node shows on each flow's path"}
		for _, p := range middlebox.Presets() {
			out = append(out, p.Name+"\t"+p.Source)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// exporterGCPercent is the exporter's GOGC unless the environment sets one.
const exporterGCPercent = 50
