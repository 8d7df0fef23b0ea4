package main

import (
	"fmt"
	"io"

	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

// globalFlags are the flags every command shares.
type globalFlags struct {
	output  string
	reports []string
}

var global globalFlags

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kadiag",
		Short: "Find, prove and fix TCP connections that middleboxes silently forget when idle",
		Long: `kadiag finds, proves and fixes long-idle TCP connections that a NAT gateway,
load balancer or conntrack table forgets, so the reply never arrives and the
client waits until its read timeout (or forever).

  kadiag doctor    one process on one screen: what is wrong and what to change
  kadiag sockets   is keepalive armed on a process's sockets, and will they survive?
  kadiag capture   proof on the wire that keepalive probes go out
  kadiag simulate  a lab with a middlebox that forgets idle flows, with and without the fix
  kadiag path      how long the real path keeps an idle flow, and what it does after
  kadiag preload   the bundled LD_PRELOAD library that turns keepalive on
  kadiag exporter  the keepalive risk of every process on a node, as Prometheus metrics
  kadiag fix       turn keepalive on in a running process, or for every new connection of a cgroup

Every command prints a table, or with -o json, junit, markdown or html;
--report FILE (repeatable) writes the report to a file as well.
Exit codes: 0 ok, 1 a check failed, 2 an error.`,
		Version: version,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{err: fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()), cmd: cmd}
			}
			return nil
		},
		RunE:          func(cmd *cobra.Command, args []string) error { return cmd.Help() },
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if _, err := reports.ParseFormat(global.output); err != nil {
				return err
			}
			for _, path := range global.reports {
				if err := reports.CheckPath(path); err != nil {
					return err
				}
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&global.output, "output", "o", "table", "output format: table, json, junit, markdown or html")
	root.PersistentFlags().StringArrayVar(&global.reports, "report", nil, "also write the report to FILE (atomically), in the format its extension names: .json, .xml (JUnit), .md, .html, .txt; repeatable")
	root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, f := range reports.Formats {
			out = append(out, string(f))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err: err, cmd: cmd}
	})
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands holds the constructors of every subcommand; each command's file
// registers itself in an init function so commands stay in files of their own.
var subcommands []func() *cobra.Command

// usageError is a bad flag or argument; it names the command's help.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e usageError) Error() string {
	return e.err.Error() + " (see '" + e.cmd.CommandPath() + " --help')"
}

func (e usageError) Unwrap() error { return e.err }

// render writes r in the format chosen with --output to the command's
// stdout, and to every --report file in the format its extension names
// (atomically). Stdout stays empty when a file already takes -o's format:
// -o html --report kadiag.html writes the page once, unless a file failed.
func render(cmd *cobra.Command, r reports.Report) error {
	f, err := reports.ParseFormat(global.output)
	if err != nil {
		return err
	}
	// A report file that cannot be written (disk full, no such directory)
	// must not cost the others or stdout: the findings may have taken a
	// long lab run or capture. The first failure is the error.
	toStdout := true
	var first error
	for _, path := range global.reports {
		ff := reports.FormatForFile(path, f)
		if ff == f {
			toStdout = false
		}
		if err := reports.WriteFile(path, func(w io.Writer) error { return reports.Render(w, ff, r) }); err != nil && first == nil {
			first = err
		}
	}
	if toStdout || first != nil {
		if err := reports.Render(cmd.OutOrStdout(), f, r); err != nil && first == nil {
			first = err
		}
	}
	return first
}
