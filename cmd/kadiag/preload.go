package main

import (
	"fmt"
	"runtime"
	"time"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/preload"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newPreloadCmd) }

func newPreloadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preload",
		Short: "The bundled LD_PRELOAD library that turns TCP keepalive on in any dynamically linked process",
		Long: `kadiag carries libkadiag_keepalive.so (x86_64 glibc and musl, aarch64 glibc).
Preloaded into a process, it turns SO_KEEPALIVE on for every IPv4/IPv6 TCP socket
and sets idle 60s, interval 15s, count 4 (or what KADIAG_KEEPIDLE, KADIAG_KEEPINTVL,
KADIAG_KEEPCNT and KADIAG_USER_TIMEOUT say). In enforce mode (default) an
application that turns keepalive off or asks for slower timings gets the
configured ones. It has no effect on Go, static or secure-execution programs.
See docs/preload.md.`,
		Example: `  kadiag preload extract --dir /usr/local/lib/kadiag
  eval "$(kadiag preload env --keepidle 60s --lib /usr/local/lib/kadiag/libkadiag_keepalive.so)"; exec java -jar app.jar
  kadiag preload env --format k8s --container app > kadiag-preload.yaml
  kadiag preload check --pid 1234`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPreloadExtractCmd(), newPreloadEnvCmd(), newPreloadCheckCmd())
	return cmd
}

func newPreloadExtractCmd() *cobra.Command {
	var dir, libc, arch string
	cmd := &cobra.Command{
		Use:   "extract --dir DIR",
		Short: "Write the library for this (or the given) libc and architecture into DIR and print its path",
		Long: `Writes libkadiag_keepalive.so into DIR atomically (temporary file, fsync,
rename; mode 0755; a symlink at the name is replaced, never followed) and prints
its absolute path. A missing DIR is created, parents too, mode 0755, as
'install -d' does. --libc auto picks musl only where no glibc loader exists.`,
		Example: `  kadiag preload extract --dir /usr/local/lib/kadiag
  kadiag preload extract --dir ./lib --libc musl --arch arm64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageError{err: fmt.Errorf("--dir is required (the directory to write %s into)", preload.LibraryName), cmd: cmd}
			}
			t, err := preload.Resolve(preload.Libc(libc), arch)
			if err != nil {
				return usageError{err: err, cmd: cmd}
			}
			path, err := preload.Extract(dir, t)
			if err != nil {
				return err
			}
			return render(cmd, reports.NewPreloadExtract(path, t))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the library into (created with its parents, mode 0755, when missing)")
	cmd.Flags().StringVar(&libc, "libc", "auto", "C library of the target programs: auto, glibc or musl")
	cmd.Flags().StringVar(&arch, "arch", runtime.GOARCH, "architecture: amd64, arm64 or auto")
	return cmd
}

func newPreloadEnvCmd() *cobra.Command {
	var (
		idle, interval, userTimeout string
		count                       int
		noEnforce                   bool
		format, lib, image          string
		container, libc             string
	)
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print the exact environment that preloads the library: for a shell, docker or a Kubernetes patch",
		Long: `Prints LD_PRELOAD and the KADIAG_* settings. --format shell prints export lines,
docker an env-file for 'docker run --env-file', k8s a strategic merge patch: an
initContainer that extracts the library from the kadiag image into an emptyDir,
the volume mount and the environment of the application container.`,
		Example: `  kadiag preload env
  kadiag preload env --keepidle 30s --keepintvl 10s --keepcnt 3 --user-timeout 90s
  kadiag preload env --format docker > kadiag.env
  kadiag preload env --format k8s --container app --libc musl | kubectl patch deployment web --patch-file /dev/stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var c preload.Config
			var err error
			for _, f := range []struct {
				name, v string
				d       *time.Duration
			}{{"--keepidle", idle, &c.Idle}, {"--keepintvl", interval, &c.Interval}, {"--user-timeout", userTimeout, &c.UserTimeout}} {
				if *f.d, err = middlebox.ParseDuration(f.v); err != nil {
					return usageError{err: fmt.Errorf("%s: %w", f.name, err), cmd: cmd}
				}
			}
			c.Count = count
			c.NoEnforce = noEnforce
			if c.Idle == 0 || c.Interval == 0 || c.Count == 0 {
				return usageError{err: fmt.Errorf("--keepidle, --keepintvl and --keepcnt must be at least 1s, 1s and 1"), cmd: cmd}
			}
			r := reports.PreloadEnv{Schema: "kadiag.preload.env/v1", Format: format}
			switch format {
			case reports.EnvShell, reports.EnvDocker:
			case reports.EnvK8s:
				if libc == "auto" {
					libc = string(preload.Glibc) // the cluster's images, not this machine, decide
				}
				if _, err := preload.Resolve(preload.Libc(libc), "amd64"); err != nil {
					return usageError{err: err, cmd: cmd}
				}
				r.K8s = &reports.PreloadK8s{Image: image, Container: container, MountPath: "/kadiag-preload", Libc: libc}
				if !cmd.Flags().Changed("lib") {
					lib = r.K8s.MountPath + "/" + preload.LibraryName
				}
			default:
				return usageError{err: fmt.Errorf("unknown --format %q (use shell, k8s or docker)", format), cmd: cmd}
			}
			if r.Env, err = preload.Env(lib, c); err != nil {
				return usageError{err: err, cmd: cmd}
			}
			return render(cmd, r)
		},
	}
	def := preload.Defaults()
	// One setting has one name across the CLI (simulate's and fix's); the
	// older --idle, --interval and --count stay as hidden aliases.
	cmd.Flags().StringVar(&idle, "keepidle", "60s", "idle time before the first probe (TCP_KEEPIDLE), 1s-32767s")
	cmd.Flags().StringVar(&interval, "keepintvl", "15s", "time between probes (TCP_KEEPINTVL), 1s-32767s")
	cmd.Flags().IntVar(&count, "keepcnt", def.Count, "unanswered probes before the connection is dropped (TCP_KEEPCNT), 1-127")
	cmd.Flags().StringVar(&idle, "idle", "60s", "alias of --keepidle")
	cmd.Flags().StringVar(&interval, "interval", "15s", "alias of --keepintvl")
	cmd.Flags().IntVar(&count, "count", def.Count, "alias of --keepcnt")
	for _, alias := range []string{"idle", "interval", "count"} {
		cmd.Flags().MarkHidden(alias)
	}
	cmd.Flags().StringVar(&userTimeout, "user-timeout", "0", "TCP_USER_TIMEOUT: drop when sent data stays unacknowledged this long (0: not set)")
	cmd.Flags().BoolVar(&noEnforce, "no-enforce", false, "let the application turn keepalive off or slow it down (KADIAG_ENFORCE=0)")
	cmd.Flags().StringVar(&format, "format", reports.EnvShell, "shell, k8s or docker")
	cmd.Flags().StringVar(&lib, "lib", "/usr/local/lib/kadiag/"+preload.LibraryName, "path of the extracted library, as the target process sees it")
	cmd.Flags().StringVar(&image, "image", "ghcr.io/kadiag/kadiag:latest", "k8s: the kadiag image the initContainer runs")
	cmd.Flags().StringVar(&container, "container", "app", "k8s: name of the application container to patch")
	cmd.Flags().StringVar(&libc, "libc", "auto", "k8s: C library of the application image: glibc or musl (Alpine); auto means glibc")
	return cmd
}

func newPreloadCheckCmd() *cobra.Command {
	var pid int
	cmd := &cobra.Command{
		Use:   "check --pid N",
		Short: "Is the library loaded in a process, with which settings, and do its TCP sockets carry them?",
		Long: `Reads /proc/PID/maps (is the library mapped), /proc/PID/environ (its settings)
and every TCP socket's options through pidfd_getfd (needs root or CAP_SYS_PTRACE).
When preload cannot work it says why and what to do: Go programs, static
programs, setuid/file-capability programs, a libc mismatch.
Exit 0 effective, 1 not effective, 2 error.`,
		Example: `  kadiag preload check --pid $(pgrep -f app.jar)
  kadiag preload check --pid 1234 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if pid <= 0 {
				return usageError{err: fmt.Errorf("--pid is required (the process to check)"), cmd: cmd}
			}
			r, err := preload.Check(pid)
			if err != nil {
				return err
			}
			if err := render(cmd, reports.PreloadCheck{CheckResult: r}); err != nil {
				return err
			}
			if !r.Effective {
				return errCheckFailed
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "process to check")
	return cmd
}
