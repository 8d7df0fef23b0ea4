package nodebox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kadiag/kadiag/internal/netns"
)

// Role says why a namespace is considered.
type Role string

// The namespaces a socket's flow is looked up in.
const (
	// Declared: named with --conntrack-netns, a namespace the user says
	// NATs the flows (a node's gateway namespace, a lab's middlebox).
	Declared Role = "declared"
	// Own: the socket's own network namespace (a pod's).
	Own Role = "own"
	// Node: the node's namespace, /proc/1/ns/net (with hostPID, the host's
	// even where kadiag runs in a pod with its own namespace).
	Node Role = "node"
	// Self: kadiag's own namespace.
	Self Role = "self"
)

// Namespace is one network namespace and the boxes visible in it.
type Namespace struct {
	// Name is the path given with --conntrack-netns, else "net:[inode]".
	Name string
	Role Role
	Ino  uint64
	// Tracking tells whether the namespace's conntrack table holds any
	// entry: only then do its flows pass a conntrack that can forget them.
	Tracking bool
	// Established is the namespace's conntrack established timeout
	// (net.netfilter.nf_conntrack_tcp_timeout_established); zero when
	// conntrack is not loaded there.
	Established time.Duration
	// IPVS is the IPVS TCP timeout when IPVS has virtual services in the
	// namespace (kube-proxy's IPVS mode), else zero.
	IPVS time.Duration
	// flows indexes the conntrack table by both of each entry's tuples.
	flows map[tuple]entry
}

// ErrNetns wraps a namespace that cannot be opened or entered.
var ErrNetns = errors.New("cannot read network namespace")

// open reads one namespace: its conntrack timeout and table and its IPVS
// timeout. A namespace without conntrack or IPVS simply has none; only a
// namespace that cannot be entered or dumped is an error.
func open(path string, role Role) (*Namespace, error) {
	h, err := vns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrNetns, path, err)
	}
	defer h.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(h), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return nil, fmt.Errorf("%w %s: not a namespace file (give /proc/PID/ns/net or /run/netns/NAME)", ErrNetns, path)
	}
	ino, err := netns.HandleIno(h)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrNetns, path, err)
	}
	n := &Namespace{Name: fmt.Sprintf("net:[%d]", ino), Role: role, Ino: ino}
	if role == Declared {
		n.Name = path
	}
	err = netns.Do(h, func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established")
		if err == nil {
			s, perr := strconv.Atoi(strings.TrimSpace(string(b)))
			if perr == nil {
				n.Established = time.Duration(s) * time.Second
			}
		}
		n.IPVS, err = ipvsTimeout()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	if n.Established > 0 {
		if n.flows, err = dumpFlows(h); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		n.Tracking = len(n.flows) > 0
	}
	return n, nil
}
