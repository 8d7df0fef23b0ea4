package main

import (
	"github.com/spf13/pflag"

	"github.com/kadiag/kadiag/internal/pod"
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
