package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/kadiag/kadiag/internal/bpf"
	knetns "github.com/kadiag/kadiag/internal/netns"
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

	tcp     *bpf.TCPReader // set when the BPF path reads (bpfread.go)
	bpfRead bool           // sockets holds what it read (diagEntry.bpf)
	// walk: a process here holds a socket the descriptor walk could not
	// read (or was not listed by it), so the namespace is walked too.
	walk bool
	// files: the descriptor walk read its processes' sockets.
	files  bool
	bpfErr error
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
	// The BPF iterator, where it runs, gives all the dump would (bpfread.go).
	if !n.loadBPF(ns) {
		n.sockets, n.interrupted, n.err = dump(ns, n.same, n.id)
		if n.err != nil {
			return
		}
	}
	n.sysctl, _ = readSysctl(ns, n.same)
}

// dump returns every TCP socket of the namespace by inode. The dump is
// decoded message by message into diagEntry values as it arrives, so a
// namespace with 100,000 sockets costs a few MB, not one heap object per
// field per socket. MPTCP sockets (their subflows are in the TCP dump under
// the MPTCP socket's inode) are marked from a second, MPTCP dump.
func dump(ns netns.NsHandle, same bool, id string) (_ map[uint64]diagEntry, interrupted bool, _ error) {
	fd, err := diagSocket(ns, same)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, false, fmt.Errorf("enter network namespace %s: %w (%s; or run kadiag inside that namespace, e.g. with nsenter or kubectl exec)", id, ErrPermission, privHint("CAP_SYS_ADMIN"))
		}
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, false, fmt.Errorf("%w (load the inet_diag and tcp_diag modules)", ErrNoInetDiag)
		}
		return nil, false, fmt.Errorf("inet_diag socket in %s: %w", id, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, diagBufferSize)
	out := make(map[uint64]diagEntry)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		// A dump interrupted by a concurrent change is retried: partial
		// results would make live sockets look absent.
		var intr bool
		for try := 0; ; try++ {
			intr, err = dumpFamily(fd, buf, diagRequest{family: fam, protocol: unix.IPPROTO_TCP}, func(b []byte) {
				if e, ok := decodeDiag(b); ok && e.inode != 0 {
					out[uint64(e.inode)] = e
				}
			})
			if err != nil || !intr || try == 2 {
				break
			}
		}
		if err != nil {
			if fam == unix.AF_INET6 && (errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.ENOENT)) {
				break // IPv6 is not built into this kernel: no inet6 sockets exist.
			}
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) {
				return nil, false, fmt.Errorf("%w (load the tcp_diag module)", ErrNoInetDiag)
			}
			return nil, false, fmt.Errorf("inet_diag dump in %s: %w", id, err)
		}
		interrupted = interrupted || intr
	}
	markMPTCP(fd, buf, out)
	return out, interrupted, nil
}

// markMPTCP marks the sockets that are MPTCP ones. Without mptcp_diag
// (ENOENT) or MPTCP in the kernel nothing is marked: those sockets are TCP.
func markMPTCP(fd int, buf []byte, out map[uint64]diagEntry) {
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		dumpFamily(fd, buf, diagRequest{family: fam, protocol: ipprotoMPTCP}, func(b []byte) {
			if e, ok := decodeDiag(b); ok {
				if x, ok := out[uint64(e.inode)]; ok {
					x.mptcp = true
					out[uint64(e.inode)] = x
				}
			}
		})
	}
}

// diagBufferSize holds the largest datagram a netlink dump sends (32 KiB).
const diagBufferSize = 64 << 10

// diagSocket opens a NETLINK_INET_DIAG socket inside ns: a netlink socket
// answers for the namespace it was created in.
func diagSocket(ns netns.NsHandle, same bool) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	}
	if same {
		return open()
	}
	fd := -1
	err := knetns.Do(ns, func() error {
		var err error
		fd, err = open()
		return err
	})
	return fd, err
}

// dumpFamily sends one SOCK_DIAG_BY_FAMILY dump request and calls f with
// every answer's payload (an inet_diag_msg and its attributes). It reports
// whether the kernel flagged the dump as interrupted (NLM_F_DUMP_INTR).
func dumpFamily(fd int, buf []byte, r diagRequest, f func([]byte)) (interrupted bool, _ error) {
	const seq = 1
	req := r.message(seq)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, err
	}
	for {
		n, _, flags, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return interrupted, err
		}
		if flags&unix.MSG_TRUNC != 0 {
			return interrupted, fmt.Errorf("inet_diag: message truncated")
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return interrupted, err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			interrupted = interrupted || m.Header.Flags&unix.NLM_F_DUMP_INTR != 0
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return interrupted, netlinkErrno(m.Data)
			case unix.NLMSG_ERROR:
				if err := netlinkErrno(m.Data); err != nil {
					return interrupted, err
				}
				return interrupted, nil
			default:
				f(m.Data)
			}
		}
	}
}

// netlinkErrno reads the negative errno that starts an NLMSG_ERROR or
// NLMSG_DONE payload; nil for 0 or none.
func netlinkErrno(b []byte) error {
	if len(b) < 4 {
		return nil
	}
	if e := int32(binary.NativeEndian.Uint32(b)); e < 0 {
		return unix.Errno(-e)
	}
	return nil
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
