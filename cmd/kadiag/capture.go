package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kadiag/kadiag/capture"
	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newCaptureCmd) }

type captureFlags struct {
	read        string
	pid         int
	netns       string
	iface       string
	duration    string
	write       string
	maxIdle     string
	probesEvery string
	snaplen     int
	pod         podFlags
}

func newCaptureCmd() *cobra.Command {
	var fl captureFlags
	cmd := &cobra.Command{
		Use:   "capture (--read FILE | --pid N | --pod NAMESPACE/NAME | --netns PATH)",
		Short: "Proof on the wire that keepalive probes go out, per TCP flow, live or from pcap/pcapng",
		Long: `capture follows every TCP flow of a capture and reports, per flow, the
keepalive probes sent (as Wireshark's tcp.analysis.keep_alive), how many were
answered, their intervals, the idle time before the first probe, the longest
silent gap and RSTs, with a verdict against a middlebox's idle limit.

Offline it reads pcap (micro- and nanosecond) and pcapng files, gzip too, with
Ethernet (802.1Q), Linux cooked SLL/SLL2 (tcpdump -i any), raw IP and BSD
loopback frames. Live it captures with AF_PACKET inside the network namespace
of a process (--pid, only that process's ports; --pod and --container pick
the pod's or container's first process) or of a namespace (--netns)
until Ctrl-C or --duration, optionally saving a pcapng (--write); it stops on
its own, with the report and a note, when the --pid process exits or an
interface it reads fails.

A flow is at-risk when its longest silence reaches --max-idle or a probe went
unanswered. Exit codes: 0 every flow ok, 1 a flow at risk or an assertion
failed, 2 an error.`,
		Example: `  kadiag capture --read client.pcap
  kadiag capture --read dump.pcapng.gz --max-idle aws-nat -o json
  kadiag capture --pid 4242 --duration 10m --write evidence.pcapng
  kadiag capture --netns /run/netns/app --iface eth0 --assert-probes-every 60s -o junit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCapture(cmd, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.read, "read", "", "analyse a pcap or pcapng file (gzip accepted)")
	f.IntVar(&fl.pid, "pid", 0, "capture live in this process's network namespace, only its TCP ports")
	f.StringVar(&fl.netns, "netns", "", "capture live in this network namespace (e.g. /run/netns/NAME)")
	f.StringVar(&fl.iface, "iface", "", "live: capture on this interface only (default: every interface that is up)")
	f.StringVar(&fl.duration, "duration", "", "live: stop after this long (default: until Ctrl-C)")
	f.StringVar(&fl.write, "write", "", "live: also save the packets to this pcapng file (written atomically)")
	f.StringVar(&fl.maxIdle, "max-idle", "350s", "the middlebox's idle limit: a duration or a preset (aws-nat, azure-lb, gcp-nat, ...)")
	f.StringVar(&fl.probesEvery, "assert-probes-every", "", "fail any flow that stayed silent longer than this without a probe")
	f.IntVar(&fl.snaplen, "snaplen", 128, "live: bytes kept per packet (headers are enough)")
	fl.pod.add(f, true)
	cmd.MarkFlagsMutuallyExclusive("read", "pid", "netns", "pod")
	cmd.MarkFlagsOneRequired("read", "pid", "netns", "pod")
	return cmd
}

func runCapture(cmd *cobra.Command, fl captureFlags) error {
	bad := func(format string, a ...any) error {
		return usageError{err: fmt.Errorf(format, a...), cmd: cmd}
	}
	var opts capture.Options
	var err error
	if opts.MaxIdle, err = middlebox.ParseIdle(fl.maxIdle); err != nil {
		return bad("--max-idle: %w", err)
	}
	if fl.probesEvery != "" {
		if opts.ProbesEvery, err = middlebox.ParseDuration(fl.probesEvery); err != nil || opts.ProbesEvery == 0 {
			if err == nil {
				err = errors.New("must be positive")
			}
			return bad("--assert-probes-every: %w", err)
		}
	}
	opts.Timeline = wantsTimeline()
	live := fl.read == ""
	if !live {
		for name, set := range map[string]bool{"--iface": fl.iface != "", "--duration": fl.duration != "",
			"--write": fl.write != "", "--snaplen": cmd.Flags().Changed("snaplen")} {
			if set {
				return bad("%s works only with a live capture (--pid or --netns), not with --read", name)
			}
		}
		res, rerr := capture.ReadFile(fl.read, opts)
		return finishCapture(cmd, res, rerr)
	}

	if fl.pod.container != "" && fl.pod.pod == "" {
		return bad("--container selects a container of --pod: give --pod NAMESPACE/NAME too")
	}
	if fl.pod.pod != "" {
		pids, err := fl.pod.pids()
		if err != nil {
			return err
		}
		fl.pid = pod.Main(pids)
	}
	lo := capture.LiveOptions{Pid: fl.pid, Netns: fl.netns, Iface: fl.iface, Write: fl.write, Snaplen: fl.snaplen}
	if fl.pid < 0 || (cmd.Flags().Changed("pid") && fl.pid == 0) {
		return bad("--pid %d: not a process id", fl.pid)
	}
	if fl.snaplen < 64 || fl.snaplen > 65535 {
		return bad("--snaplen %d: use 64 to 65535 (128 keeps every header)", fl.snaplen)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if fl.duration != "" {
		d, err := middlebox.ParseDuration(fl.duration)
		if err != nil || d == 0 {
			if err == nil {
				err = errors.New("must be positive")
			}
			return bad("--duration: %w", err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var expected time.Duration
	if d, err := middlebox.ParseDuration(fl.duration); err == nil {
		expected = d
	}
	stopProgress := startProgress(cmd, expected, func(time.Duration) string {
		if expected > 0 {
			return "capturing; the report follows when the time is up (Ctrl-C ends it early)"
		}
		if fl.pid > 0 {
			return "capturing; Ctrl-C or the process's exit ends the capture and prints the report"
		}
		return "capturing; Ctrl-C ends the capture and prints the report"
	})
	res, lerr := capture.Live(ctx, lo, opts)
	stopProgress()
	return finishCapture(cmd, res, lerr)
}

// finishCapture renders what was captured, even when the input broke off,
// then turns the outcome into the exit code.
func finishCapture(cmd *cobra.Command, res *capture.Result, err error) error {
	if res != nil {
		rep := reports.Capture{Result: res}
		// Render streams the JSON through Capture.WriteJSON (reports.JSONWriter).
		if rerr := render(cmd, rep); rerr != nil {
			return rerr
		}
		if err == nil && rep.Failed() {
			return errCheckFailed
		}
	}
	if err != nil {
		return err
	}
	return nil
}
