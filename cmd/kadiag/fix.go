package main

import (
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/fix"
	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { subcommands = append(subcommands, newFixCmd) }

// keepaliveFlags are the keepalive settings under the names simulate uses;
// preload env takes the same ones.
type keepaliveFlags struct {
	keepidle, keepintvl, userTimeout string
	keepcnt                          int
}

func (k *keepaliveFlags) add(f *pflag.FlagSet) {
	f.StringVar(&k.keepidle, "keepidle", "60s", "idle time before the first probe (TCP_KEEPIDLE), 1s-32767s")
	f.StringVar(&k.keepintvl, "keepintvl", "15s", "time between probes (TCP_KEEPINTVL), 1s-32767s")
	f.IntVar(&k.keepcnt, "keepcnt", fix.DefaultCount, "unanswered probes before the connection is dropped (TCP_KEEPCNT), 1-127")
	f.StringVar(&k.userTimeout, "user-timeout", "0", "TCP_USER_TIMEOUT: drop when sent data stays unacknowledged this long (0: not set)")
}

func (k *keepaliveFlags) settings() (fix.Settings, error) {
	var s fix.Settings
	for _, f := range []struct {
		name, v string
		d       *time.Duration
	}{{"--keepidle", k.keepidle, &s.Idle}, {"--keepintvl", k.keepintvl, &s.Interval}, {"--user-timeout", k.userTimeout, &s.UserTimeout}} {
		var err error
		if *f.d, err = middlebox.ParseDuration(f.v); err != nil {
			return s, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	s.Count = k.keepcnt
	return s, s.Validate()
}

func newFixCmd() *cobra.Command {
	var (
		ka                       keepaliveFlags
		pid                      int
		cgroup                   string
		cgroupOf, list, remove   bool
		hold, dryRun, allSockets bool
		via, watch               string
		pf                       podFlags
	)
	cmd := &cobra.Command{
		Use:   "fix (--pid N | --pod NAMESPACE/NAME | --cgroup PATH | --pid N --cgroup-of | --list)",
		Short: "Turn keepalive on where the preload cannot: a running process's sockets, or every new connection of a cgroup",
		Long: `fix sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT (and
TCP_USER_TIMEOUT with --user-timeout), with the preload library's enforce
semantics: it never turns keepalive off and never lengthens a shorter timing
the application chose. No restart, any language, static binaries included.

  --pid N            the sockets the process holds now: each socket is duplicated
                     (pidfd_getfd, needs CAP_SYS_PTRACE or the process's own user),
                     its identity re-checked on the copy, the options set on it and
                     read back: before -> after. Established and listening sockets
                     whose peer is beyond this host (accepted sockets inherit from
                     the listener); --all-sockets for every TCP socket.
  --via bpf          the same through a BPF TCP iterator in the process's network
                     namespace, choosing the sockets by cookie (kernel BTF,
                     CAP_BPF and CAP_PERFMON; no ptrace)
  --cgroup PATH      every connection made from now on in a cgroup v2 (a container,
                     a pod, kubepods.slice) and its descendants: a sock_ops program
                     sets the options on connect, accept and listen, and a
                     cgroup/setsockopt program keeps them when the application
                     turns keepalive off later (CAP_BPF and CAP_NET_ADMIN).
                     Pinned in bpffs: it stays after kadiag exits; --hold keeps it
                     only while kadiag runs. Re-running replaces it.
  --list, --remove   what kadiag pinned where; detach it

Exit codes: 0 done, 1 a socket could not be fixed, 2 an error.`,
		Example: `  sudo kadiag fix --pid 4711
  sudo kadiag fix --pid 4711 --dry-run
  sudo kadiag fix --pid 4711 --keepidle 30s --user-timeout 90s --watch 2m
  sudo kadiag fix --pid 4711 --via bpf
  sudo kadiag fix --cgroup /sys/fs/cgroup/system.slice/app.service
  sudo kadiag fix --pid 4711 --cgroup-of
  sudo kadiag fix --cgroup kubepods.slice --hold
  sudo kadiag fix --list
  sudo kadiag fix --remove --cgroup /sys/fs/cgroup/system.slice/app.service`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			changed := cmd.Flags().Changed
			usage := func(format string, a ...any) error { return usageError{err: fmt.Errorf(format, a...), cmd: cmd} }
			s, err := ka.settings()
			if err != nil {
				return usageError{err: err, cmd: cmd}
			}
			if pf.container != "" && pf.pod == "" {
				return usage("--container selects a container of --pod: give --pod NAMESPACE/NAME too")
			}
			if pf.pod != "" {
				if pid != 0 {
					return usage("give --pid or --pod, not both")
				}
				pids, err := pf.pids()
				if err != nil {
					return err
				}
				// The container's first process, as doctor and capture take it.
				pid = pod.Main(pids)
			}
			isCgroup := cgroup != "" || cgroupOf
			switch {
			case list && (pid != 0 || isCgroup || remove):
				return usage("--list takes no other target")
			case cgroupOf && pid <= 0:
				return usage("--cgroup-of needs --pid N")
			case cgroupOf && cgroup != "":
				return usage("give --cgroup PATH or --pid N --cgroup-of, not both")
			case remove && !isCgroup:
				return usage("--remove needs --cgroup PATH or --pid N --cgroup-of")
			case !list && !isCgroup && pid == 0:
				return usage("give --pid N, --cgroup PATH, --pid N --cgroup-of or --list")
			case isCgroup && (changed("via") || changed("watch") || allSockets):
				return usage("--via, --watch and --all-sockets apply to --pid without --cgroup-of")
			case !isCgroup && hold:
				return usage("--hold applies to --cgroup")
			case changed("watch") && (via == "bpf" || dryRun):
				return usage("--watch observes the duplicated sockets after a change: not with --via bpf or --dry-run")
			}
			var r *fix.Report
			switch {
			case list:
				r, err = fix.List()
			case isCgroup:
				var dir string
				if cgroupOf {
					dir, err = fix.CgroupOf(pid)
				} else {
					dir, err = fix.ResolveCgroup(cgroup)
				}
				if err != nil && remove && !cgroupOf && errors.Is(err, fix.ErrNoCgroup2) {
					// A cgroup deleted since: its pinned policy is found by
					// the path it was attached with.
					dir, err = cgroup, nil
				}
				if err != nil {
					return err
				}
				if remove {
					r, err = fix.Remove(dir)
					break
				}
				var held *fix.Held
				r, held, err = fix.Cgroup(dir, s, hold, dryRun)
				if err != nil {
					return err
				}
				if held != nil {
					return holdPolicy(cmd, r, held)
				}
			default:
				o := fix.LiveOptions{Settings: s, AllSockets: allSockets, DryRun: dryRun}
				switch via {
				case "pidfd", "":
					o.Via = fix.ViaPidfd
				case "bpf":
					o.Via = fix.ViaBPF
				default:
					return usage("unknown --via %q (use pidfd or bpf)", via)
				}
				if watch != "" {
					if o.Watch, err = middlebox.ParseDuration(watch); err != nil {
						return usage("--watch: %w", err)
					}
				}
				r, err = fix.PID(pid, o)
			}
			if err != nil {
				return err
			}
			return renderFix(cmd, r)
		},
	}
	f := cmd.Flags()
	f.IntVar(&pid, "pid", 0, "process whose sockets to fix (with --cgroup-of: whose cgroup)")
	f.StringVar(&cgroup, "cgroup", "", "cgroup v2 directory, or its path as /proc/PID/cgroup prints it, whose new connections to fix")
	pf.add(f, true)
	f.BoolVar(&cgroupOf, "cgroup-of", false, "with --pid: fix the process's cgroup instead of its sockets")
	f.BoolVar(&list, "list", false, "list the cgroup policies kadiag pinned")
	f.BoolVar(&remove, "remove", false, "detach kadiag's policy from --cgroup")
	f.BoolVar(&hold, "hold", false, "keep the cgroup policy only while kadiag runs (until SIGINT/SIGTERM), not pinned")
	f.BoolVar(&dryRun, "dry-run", false, "read and print the plan; change nothing")
	f.BoolVar(&allSockets, "all-sockets", false, "fix every TCP socket, local peers and all states included")
	f.StringVar(&via, "via", "pidfd", "how to reach a live process's sockets: pidfd (pidfd_getfd) or bpf (a TCP iterator)")
	f.StringVar(&watch, "watch", "", "after the change, watch the sockets this long and say which probes were answered")
	ka.add(f)
	cmd.RegisterFlagCompletionFunc("via", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"pidfd", "bpf"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func renderFix(cmd *cobra.Command, r *fix.Report) error {
	if err := render(cmd, reports.Fix{Report: r}); err != nil {
		return err
	}
	if r.Failed() {
		return errCheckFailed
	}
	return nil
}

// holdPolicy prints the report, then keeps the policy attached until
// SIGINT or SIGTERM (the DaemonSet way: delete the pod, the policy goes).
func holdPolicy(cmd *cobra.Command, r *fix.Report, h *fix.Held) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r.Notes = append(r.Notes, "held: the policy is detached when kadiag exits (SIGINT, SIGTERM)")
	if err := render(cmd, reports.Fix{Report: r}); err != nil {
		return errors.Join(err, h.Release())
	}
	<-ctx.Done()
	return h.Release()
}
