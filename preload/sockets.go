package preload

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is the keepalive state of one TCP socket of a process, read with
// getsockopt on a duplicate of its descriptor (pidfd_getfd).
type Socket struct {
	FD          int
	Family      string // inet or inet6
	Listening   bool
	Local       string
	Remote      string
	Keepalive   bool
	Idle        time.Duration
	Interval    time.Duration
	Count       int
	UserTimeout time.Duration
}

// TCPSockets returns the IPv4/IPv6 TCP sockets of pid with their exact
// keepalive options. It needs ptrace rights over pid (root, CAP_SYS_PTRACE or
// the same user on a dumpable process).
func TCPSockets(pid int) ([]Socket, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sockets of pid %d: %w", pid, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var out []Socket
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			if err == unix.EBADF {
				continue // closed since the listing
			}
			return nil, fmt.Errorf("pidfd_getfd pid %d fd %d: %w (needs root or CAP_SYS_PTRACE)", pid, fd, err)
		}
		s, ok := readSocket(dup)
		unix.Close(dup)
		if ok {
			s.FD = fd
			out = append(out, s)
		}
	}
	return out, nil
}

func readSocket(fd int) (Socket, bool) {
	var s Socket
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
		return s, false
	}
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return s, false
	}
	s.Family = "inet"
	if domain == unix.AF_INET6 {
		s.Family = "inet6"
	}
	acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	s.Listening = acc == 1
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Local = addrString(sa)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Remote = addrString(sa)
	}
	ka, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	s.Keepalive = ka == 1
	idle, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	intvl, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	s.Count, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	ut, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	s.Idle = time.Duration(idle) * time.Second
	s.Interval = time.Duration(intvl) * time.Second
	s.UserTimeout = time.Duration(ut) * time.Millisecond
	return s, true
}

func addrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
	}
	return ""
}
