package main

import (
	"errors"
	"fmt"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newSocketsCmd) }

func newSocketsCmd() *cobra.Command {
	var (
		pids    []int
		all     bool
		nsPath  string
		maxIdle string
		strict  bool
		explain bool
	)
	cmd := &cobra.Command{
		Use:   "sockets (--pid N ... | --all | --netns PATH)",
		Short: "Is keepalive armed on a process's TCP sockets, and will they survive the middlebox?",
		Long: `sockets reads every TCP socket of the given processes from the kernel
(inet_diag inside the process's network namespace) and, as root, the exact
keepalive options of each socket: through BPF iterators where the kernel has
BTF and kadiag has CAP_BPF and CAP_PERFMON (source "bpf", touching nothing),
else with pidfd_getfd + getsockopt (source "getsockopt"). Without either
privilege the values are inferred from the kernel's keepalive timer;
--explain-source says which path was used and why.

Each connected socket is judged against the middlebox idle timeout
(--max-idle, a duration or a preset):
  ok       keepalive on, first probe before the middlebox forgets the flow
  at-risk  keepalive off, or its first probe comes too late
  local    the peer is on this host: no middlebox in between
  unknown  could not be determined (fails only with --strict)
Listening sockets show what accepted sockets inherit and are not counted.

Exit codes: 0 nothing at risk, 1 a socket is at risk, 2 an error.`,
		Example: `  kadiag sockets --pid 4711
  kadiag sockets --pid $(pgrep -d, java) --max-idle azure-lb
  sudo kadiag sockets --all -o json
  sudo kadiag sockets --netns /run/netns/blue
  kadiag sockets --pid 4711 -o junit > sockets.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			idle, err := middlebox.ParseIdle(maxIdle)
			if err != nil {
				return usageError{err: fmt.Errorf("--max-idle: %w", err), cmd: cmd}
			}
			targets := 0
			for _, set := range []bool{len(pids) > 0, all, nsPath != ""} {
				if set {
					targets++
				}
			}
			if targets != 1 {
				return usageError{err: errors.New("give exactly one of --pid, --all or --netns"), cmd: cmd}
			}
			o := inspect.Options{MaxIdle: idle, Strict: strict, ExplainSource: explain}
			var r *inspect.Report
			switch {
			case all:
				r, err = inspect.ScanAll(o)
			case nsPath != "":
				r, err = inspect.ScanNetns(nsPath, o)
			default:
				r, err = inspect.ScanPIDs(pids, o)
			}
			if err != nil {
				return err
			}
			for _, n := range r.Notes {
				fmt.Fprintf(cmd.ErrOrStderr(), "kadiag: note: %s\n", n)
			}
			if err := render(cmd, reports.Sockets{Report: r}); err != nil {
				return err
			}
			if r.Failed() {
				return errCheckFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&pids, "pid", nil, "process to inspect (repeatable, or comma-separated)")
	f.BoolVar(&all, "all", false, "every process on the host, grouped by process")
	f.StringVar(&nsPath, "netns", "", "every TCP socket of a network namespace file (e.g. /proc/PID/ns/net, /run/netns/NAME), without process mapping")
	f.StringVar(&maxIdle, "max-idle", "350s", "middlebox idle timeout: a duration or a preset (aws-nat, aws-nlb, azure-lb, azure-nat, gcp-nat, swarm-ipvs)")
	f.BoolVar(&strict, "strict", false, "count sockets whose keepalive state is unknown as failures")
	f.BoolVar(&explain, "explain-source", false, "add a note saying how keepalive values were read (BPF iterators, pidfd_getfd + getsockopt, kernel timers) and why")
	cmd.RegisterFlagCompletionFunc("max-idle", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, p := range middlebox.Presets() {
			out = append(out, p.Name+"\t"+p.Source)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.RegisterFlagCompletionFunc("pid", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}
