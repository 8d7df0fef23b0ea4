package inspect

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// namespace is one network namespace to dump, with what was read from it.
// Every process in a namespace shares its one dump, so a host-wide scan
// costs one inet_diag round trip per family per namespace.
type namespace struct {
	id   string // "net:[ino]"
	ino  uint64
	path string         // a path that opens it: /proc/PID/ns/net or a netns file
	same bool           // the caller's own namespace: no setns, works unprivileged
	h    netns.NsHandle // held open from discovery to dump, so it cannot vanish

	sockets     map[uint64]diagEntry
	sysctl      Sysctl
	err         error // the dump failed: every process in it fails
	interrupted bool  // the dump kept being interrupted: it may lack sockets
}

// selfNetns returns the caller's network namespace inode (0 if unknown).
func selfNetns() uint64 {
	ino, err := knetns.Ino()
	if err != nil {
		return 0
	}
	return ino
}

// openNetns opens a network namespace file and checks that it is one.
func openNetns(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return netns.None(), fmt.Errorf("%w %s: %w (%s)", ErrNetns, path, ErrPermission, privHint("CAP_SYS_ADMIN"))
		}
		return netns.None(), fmt.Errorf("%w %s: %w", ErrNetns, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return netns.None(), fmt.Errorf("%w %s: %v", ErrNetns, path, err)
	}
	// NS_GET_NSTYPE tells a netns file from any other file.
	typ, err := unix.IoctlRetInt(int(h), unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		h.Close()
		return netns.None(), fmt.Errorf("%w %s: not a network namespace file (use e.g. /proc/PID/ns/net or /run/netns/NAME)", ErrNetns, path)
	}
	return h, nil
}

// load dumps the namespace's TCP sockets (both families, with tcp_info) and
// reads its keepalive sysctls.
func (n *namespace) load() {
	ns := n.h
	if !n.same && !ns.IsOpen() {
		h, err := openNetns(n.path)
		if err != nil {
			n.err = err
			return
		}
		ns = h
	}
	if ns.IsOpen() {
		defer ns.Close()
	}
	n.h = netns.None()
	n.sockets, n.interrupted, n.err = dump(ns, n.same, n.id)
	if n.err != nil {
		return
	}
	n.sysctl, _ = readSysctl(ns, n.same)
}

// dump returns every TCP socket of the namespace by inode. The dump is
// decoded message by message into diagEntry values as it arrives, so a
// namespace with 100,000 sockets costs a few MB, not one heap object per
// field per socket as the library's SocketDiagTCPInfo result would.
func dump(ns netns.NsHandle, same bool, id string) (_ map[uint64]diagEntry, interrupted bool, _ error) {
	cur := netns.None()
	if same {
		ns = netns.None() // no switch: the caller's own namespace
	}
	// GetNetlinkSocketAt creates the socket inside ns: a netlink socket
	// answers for the namespace it was created in.
	sock, err := nl.GetNetlinkSocketAt(ns, cur, unix.NETLINK_INET_DIAG)
	if err != nil {
		// The library flattens the setns error into text.
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || strings.Contains(err.Error(), unix.EPERM.Error()) {
			return nil, false, fmt.Errorf("enter network namespace %s: %w (%s; or run kadiag inside that namespace, e.g. with nsenter or kubectl exec)", id, ErrPermission, privHint("CAP_SYS_ADMIN"))
		}
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, false, fmt.Errorf("%w (load the inet_diag and tcp_diag modules)", ErrNoInetDiag)
		}
		return nil, false, fmt.Errorf("inet_diag socket in %s: %w", id, err)
	}
	defer sock.Close()
	handles := map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: {Socket: sock}}
	out := make(map[uint64]diagEntry)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		// A dump interrupted by a concurrent change is retried: partial
		// results would make live sockets look absent.
		for try := 0; ; try++ {
			req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
			req.Sockets = handles
			req.AddData(diagRequest{family: fam})
			err = req.ExecuteIter(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
				if e, ok := decodeDiag(msg); ok && e.inode != 0 {
					out[uint64(e.inode)] = e
				}
				return true
			})
			if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 2 {
				break
			}
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			interrupted = true
		} else if err != nil {
			if fam == unix.AF_INET6 && (errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.ENOENT)) {
				break // IPv6 is not built into this kernel: no inet6 sockets exist.
			}
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) {
				return nil, false, fmt.Errorf("%w (load the tcp_diag module)", ErrNoInetDiag)
			}
			return nil, false, fmt.Errorf("inet_diag dump in %s: %w", id, err)
		}
	}
	return out, interrupted, nil
}

// sysctlNames are read in this order into Sysctl.
var sysctlNames = [3]string{"tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"}

// readSysctl reads the keepalive sysctls of a namespace. procfs serves
// /proc/sys/net from the reading thread's namespace, so for another
// namespace the read happens on a fresh OS thread switched into it; the
// thread is thrown away if it cannot be switched back.
func readSysctl(ns netns.NsHandle, same bool) (Sysctl, error) {
	if same {
		return readSysctlHere()
	}
	var s Sysctl
	err := knetns.Do(ns, func() error {
		var err error
		s, err = readSysctlHere()
		return err
	})
	return s, err
}

func readSysctlHere() (Sysctl, error) {
	var v [3]int
	for i, name := range sysctlNames {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return Sysctl{}, err
		}
		v[i], err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return Sysctl{}, err
		}
	}
	return Sysctl{KeepaliveTime: v[0], KeepaliveIntvl: v[1], KeepaliveProbes: v[2]}, nil
}
