package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/nodebox"
)

// addLogRootFlag adds --log-root: where the node's /var/log (the kubelet's
// pods/ and containers/) is mounted.
func addLogRootFlag(f *pflag.FlagSet, root *string) {
	f.StringVar(root, "log-root", "", "the node's log directory holding the kubelet's pods/ and containers/ (default $"+pod.EnvLogRoot+", else "+pod.DefaultLogRoot+"; a DaemonSet names its hostPath mount)")
}

// podFlags select processes by pod: --pod NAMESPACE/NAME, --container NAME.
type podFlags struct {
	pod, container, logRoot string
}

// add registers --pod and --log-root, and --container unless the command
// has its own (doctor's names the container in its patch as well).
func (p *podFlags) add(f *pflag.FlagSet, withContainer bool) {
	f.StringVar(&p.pod, "pod", "", "the processes of this pod on this node, as NAMESPACE/NAME (named by the kubelet's log layout under --log-root)")
	if withContainer {
		f.StringVar(&p.container, "container", "", "with --pod: only this container's processes")
	}
	addLogRootFlag(f, &p.logRoot)
}

// logs reads the log layout, or returns nil when it cannot be read: the
// processes are then known by pod UID alone.
func (p *podFlags) logs() *pod.Logs {
	l, err := pod.ReadLogs(pod.LogRoot(p.logRoot))
	if err != nil {
		return nil
	}
	return l
}

// pids resolves --pod/--container to the processes on this node.
func (p *podFlags) pids() ([]int, error) {
	sel, err := pod.ParseSelector(p.pod, p.container)
	if err != nil {
		return nil, err
	}
	l, err := pod.ReadLogs(pod.LogRoot(p.logRoot))
	if err != nil {
		return nil, err
	}
	pids, _, err := pod.Select(l, sel)
	return pids, err
}

// maxIdleHelp is --max-idle's help for commands that take auto.
const maxIdleHelp = "middlebox idle timeout: a duration, a preset (aws-nat, aws-nlb, azure-lb, azure-nat, gcp-nat, swarm-ipvs), @FILE (a kadiag path measurement), or auto (the smallest conntrack or IPVS timeout this node shows on each flow's path; auto,PRESET or auto,@FILE adds a hop the node cannot see)"

// nodeFlags are --max-idle (with auto) and --conntrack-netns.
type nodeFlags struct {
	maxIdle        string
	conntrackNetns []string
}

func (n *nodeFlags) add(f *pflag.FlagSet) {
	f.StringVar(&n.maxIdle, "max-idle", "350s", maxIdleHelp)
	f.StringArrayVar(&n.conntrackNetns, "conntrack-netns", nil, "a network namespace that NATs the flows (e.g. /run/netns/NAME; repeatable): each flow's conntrack entry there, and verdict dead once it is gone")
}

// parse returns the fixed limit for the scan itself and, when the node's
// middleboxes are to be read, their options.
func (n *nodeFlags) parse() (time.Duration, *nodebox.Options, error) {
	m, err := nodebox.ParseMaxIdle(n.maxIdle, middlebox.ParseIdle)
	if err != nil {
		return 0, nil, fmt.Errorf("--max-idle: %w", err)
	}
	idle := m.Declared
	if idle == 0 {
		idle = middlebox.DefaultIdle
	}
	if !m.Auto && len(n.conntrackNetns) == 0 {
		return idle, nil, nil
	}
	return idle, &nodebox.Options{MaxIdle: m, ConntrackNetns: n.conntrackNetns}, nil
}
