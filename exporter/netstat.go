package exporter

import (
	"fmt"

	"github.com/prometheus/procfs"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kadiag/kadiag/internal/netns"
)

// NetnsStats is what the exporter publishes about one network namespace.
type NetnsStats struct {
	// Netns names the namespace as /proc/PID/ns/net reads: "net:[inode]".
	Netns string
	// Pod is the pod whose processes share the namespace (pods have one
	// each), empty for the node's own and other namespaces.
	Pod podRef
	// KeepaliveProbes is TcpExt TCPKeepAlive: keepalive probes the
	// namespace's sockets have sent since it was created.
	KeepaliveProbes uint64
}

type podRef struct{ Namespace, Name string }

// keepaliveProbes reads TcpExt TCPKeepAlive of the network namespace of
// pid. The counter is per namespace and /proc/net/netstat shows the
// reader's, so it is read from a thread inside the namespace
// (/proc/thread-self, not /proc/self, which is the main thread's).
func keepaliveProbes(pid int) (uint64, error) {
	ns, err := vns.GetFromPath(fmt.Sprintf("%s/%d/ns/net", procRoot, pid))
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = netns.Do(ns, func() error {
		p, err := fs.Proc(unix.Gettid())
		if err != nil {
			return err
		}
		st, err := p.Netstat()
		if err != nil {
			return err
		}
		if st.TcpExt.TCPKeepAlive == nil {
			return fmt.Errorf("the kernel's netstat has no TcpExt TCPKeepAlive counter in %s/%d/net/netstat", procRoot, unix.Gettid())
		}
		n = uint64(*st.TcpExt.TCPKeepAlive)
		return nil
	})
	return n, err
}
