package main

import (
	"fmt"

	"github.com/kadiag/kadiag/doctor"
	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newDoctorCmd) }

func newDoctorCmd() *cobra.Command {
	var (
		pid       int
		nf        nodeFlags
		container string
		libDir    string
		pf        podFlags
	)
	cmd := &cobra.Command{
		Use:   "doctor (--pid N | --pod NAMESPACE/NAME [--container NAME])",
		Short: "One screen for one process: what is wrong with its idle connections and what to change",
		Long: `doctor examines one process and answers "what is wrong and what do I change":
the runtime (JVM and its version, Go and its build info, Python, Node; glibc,
musl or static), its TCP sockets a middlebox can forget (as 'kadiag sockets'),
whether the keepalive preload library is loaded and effective (as 'kadiag
preload check'), the keepalive sysctls of its network namespace, whether it
runs in a container or a Kubernetes pod, and the exact fix for that runtime:
the environment or pod patch for the library, the JDK's
jdk.net.ExtendedSocketOptions, Go's net.Dialer keepalive, and why a sysctl
alone does not help.

Needs root or CAP_SYS_PTRACE for exact socket options and the environment.
Exit codes: 0 nothing at risk, 1 a socket is at risk or the library is not
effective, 2 an error.`,
		Example: `  kadiag doctor --pid 4711
  kadiag doctor --pid $(pgrep -o java) --max-idle azure-lb
  sudo kadiag doctor --pod payments/api-7f9c --container api
  kadiag doctor --pid 4711 -o markdown >> "$GITHUB_STEP_SUMMARY"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case pid != 0 && pf.pod != "":
				return usageError{err: fmt.Errorf("give --pid or --pod, not both"), cmd: cmd}
			case pf.pod != "":
				pf.container = ""
				if cmd.Flags().Changed("container") {
					pf.container = container
				}
				pids, err := pf.pids()
				if err != nil {
					return err
				}
				// The container's first process: the one whose parent is
				// outside it.
				pid = pod.Main(pids)
			case pid == 0:
				return usageError{err: fmt.Errorf("--pid is required (the process to examine), or --pod NAMESPACE/NAME"), cmd: cmd}
			}
			if !cmd.Flags().Changed("container") {
				// The patch names the process's own container when known.
				container = ""
			}
			idle, nbo, err := nf.parse()
			if err != nil {
				return usageError{err: err, cmd: cmd}
			}
			r, err := doctor.Diagnose(pid, doctor.Options{MaxIdle: idle, Container: container, LibDir: libDir, LogRoot: pf.logRoot, Middleboxes: nbo})
			if err != nil {
				return err
			}
			if err := render(cmd, reports.Doctor{Result: r}); err != nil {
				return err
			}
			if !r.Healthy {
				return errCheckFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&pid, "pid", 0, "the process to examine")
	nf.add(f)
	f.StringVar(&container, "container", "app", "the application container's name: with --pod, the container to examine; and the name the Kubernetes patch uses (default: the process's own container, else app)")
	pf.add(f, false)
	f.StringVar(&libDir, "lib-dir", "/usr/local/lib/kadiag", "where the fix puts the preload library on a host")
	cmd.RegisterFlagCompletionFunc("max-idle", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		out := []string{"auto\tthe smallest conntrack or IPVS timeout this node shows on each flow's path"}
		for _, p := range middlebox.Presets() {
			out = append(out, p.Name+"\t"+p.Source)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}
