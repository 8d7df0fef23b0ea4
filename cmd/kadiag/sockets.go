package main

import (
	"errors"
	"fmt"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/nodebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newSocketsCmd) }

func newSocketsCmd() *cobra.Command {
	var (
		pids    []int
		all     bool
		nsPath  string
		nf      nodeFlags
		strict  bool
		pf      podFlags
		explain bool
	)
	cmd := &cobra.Command{
		Use:   "sockets (--pid N ... | --pod NAMESPACE/NAME | --all | --netns PATH)",
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
  dead     ESTABLISHED, but the NAT named with --conntrack-netns has
           already forgotten the flow: the next reply is lost
--max-idle auto judges each socket against the smallest timeout this node
shows on its path: the conntrack established timeout of its own namespace,
the node's (/proc/1/ns/net), kadiag's and each --conntrack-netns one, and
IPVS's TCP timeout (kube-proxy); each flow's conntrack entry shows how long
the node will still remember it.
Listening sockets show what accepted sockets inherit and are not counted.

Exit codes: 0 nothing at risk, 1 a socket is at risk or dead, 2 an error.`,
		Example: `  kadiag sockets --pid 4711
  kadiag sockets --pid $(pgrep -d, java) --max-idle azure-lb
  sudo kadiag sockets --pod payments/api-7f9c --container api
  sudo kadiag sockets --all -o json
  sudo kadiag sockets --netns /run/netns/blue
  sudo kadiag sockets --all --max-idle auto
  sudo kadiag sockets --pid 4711 --max-idle auto --conntrack-netns /run/netns/nat
  kadiag sockets --pid 4711 -o junit > sockets.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			idle, nbo, err := nf.parse()
			if err != nil {
				return usageError{err: err, cmd: cmd}
			}
			targets := 0
			for _, set := range []bool{len(pids) > 0, all, nsPath != "", pf.pod != ""} {
				if set {
					targets++
				}
			}
			if targets != 1 {
				return usageError{err: errors.New("give exactly one of --pid, --all or --netns (or --pod NAMESPACE/NAME)"), cmd: cmd}
			}
			if pf.container != "" && pf.pod == "" {
				return usageError{err: errors.New("--container selects a container of --pod: give --pod NAMESPACE/NAME too"), cmd: cmd}
			}
			if pf.pod != "" {
				if pids, err = pf.pids(); err != nil {
					return err
				}
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
			r.AddPods(pf.logs())
			if nbo != nil {
				view, err := nodebox.Read(*nbo)
				if err != nil {
					return err
				}
				view.Apply(r)
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
	nf.add(f)
	f.BoolVar(&strict, "strict", false, "count sockets whose keepalive state is unknown as failures")
	pf.add(f, true)
	f.BoolVar(&explain, "explain-source", false, "add a note saying how keepalive values were read (BPF iterators, pidfd_getfd + getsockopt, kernel timers) and why")
	cmd.RegisterFlagCompletionFunc("max-idle", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		out := []string{"auto\tthe smallest conntrack or IPVS timeout this node shows on each flow's path"}
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
