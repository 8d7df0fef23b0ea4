package capture

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/kadiag/kadiag/inspect"
)

// ErrNoSockets is returned (wrapped) when a process has no TCP socket to
// capture.
var ErrNoSockets = errors.New("no TCP sockets")

// processPorts returns the local ports of every TCP socket the process
// holds (listening and connected), as kadiag sockets finds them: its socket
// inodes joined with an inet_diag dump of its network namespace. Only the
// ports are needed, so the socket options are not read (NoExact).
func processPorts(pid int) (map[uint16]bool, error) {
	p, err := inspect.PID(pid, inspect.Options{NoExact: true})
	if err != nil {
		return nil, fmt.Errorf("sockets of pid %d: %w", pid, err)
	}
	ports := map[uint16]bool{}
	for _, s := range p.Sockets {
		if ap, err := netip.ParseAddrPort(s.Local); err == nil && ap.Port() != 0 {
			ports[ap.Port()] = true
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("pid %d: %w (capture its namespace with --netns /proc/%d/ns/net instead)", pid, ErrNoSockets, pid)
	}
	return ports, nil
}
