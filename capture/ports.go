package capture

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoSockets is returned (wrapped) when a process has no TCP socket to
// capture.
var ErrNoSockets = errors.New("no TCP sockets")

// processPorts returns the local ports of every TCP socket the process
// holds (listening and connected), found by joining the socket inodes of
// /proc/PID/fd with an inet_diag dump of the process's network namespace.
//
// The inspect package (kadiag sockets) does the full version of this join;
// capture needs only the ports, so it keeps this small one of its own.
func processPorts(pid int, ns netns.NsHandle) (map[uint16]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list sockets of pid %d: %w", pid, err)
	}
	inodes := map[uint32]bool{}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue // closed meanwhile, or not a socket
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 32)
		if err == nil {
			inodes[uint32(n)] = true
		}
	}
	// Without the family argument the handle would dump the caller's
	// namespace, silently.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("inet_diag in the netns of pid %d: %w", pid, err)
	}
	defer h.Close()
	ports := map[uint16]bool{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("inet_diag dump: %w", err)
		}
		for _, s := range socks {
			if inodes[s.INode] && s.INode != 0 {
				ports[s.ID.SourcePort] = true
			}
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("pid %d: %w (capture its namespace with --netns /proc/%d/ns/net instead)", pid, ErrNoSockets, pid)
	}
	return ports, nil
}
