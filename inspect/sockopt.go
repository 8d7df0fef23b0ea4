package inspect

import (
	"errors"

	"github.com/kadiag/kadiag/internal/sockfd"
	"golang.org/x/sys/unix"
)

// ipprotoMPTCP is SO_PROTOCOL of a Multipath TCP socket. Go ≥ 1.24 makes
// every net.Listen listener one; its subflows are plain TCP sockets the
// process holds no descriptor for.
const ipprotoMPTCP = 262

// options are a socket's exact keepalive settings, read with getsockopt.
type options struct {
	keepalive bool
	idle      int
	intvl     int
	cnt       int
	// userTimeout is TCP_USER_TIMEOUT; noUserTimeout means the socket has no
	// such option (MPTCP answers EOPNOTSUPP or ENOPROTOOPT).
	userTimeout   int
	noUserTimeout bool
	mptcp         bool
	// netns is the socket's own network namespace inode (SIOCGSKNS), 0 when
	// it could not be read.
	netns uint64
}

// pidfd duplicates another process's descriptors. It needs ptrace-attach
// rights over the process (root, CAP_SYS_PTRACE, or the same user on a
// kernel without Yama restrictions).
type pidfd int

func openPidfd(pid int) (pidfd, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	return pidfd(fd), err
}

func (p pidfd) close() { unix.Close(int(p)) }

// exited reports whether the process has exited (a pidfd turns readable
// then, zombie or not). Kernels that answer pidfd_getfd on an exiting
// process with EBADF instead of ESRCH need it to tell "the process ended"
// from "it closed a socket".
func (p pidfd) exited() bool {
	fds := []unix.PollFd{{Fd: int32(p), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
}

// read duplicates fd, checks on the copy that it is still the socket with
// inode ino (sockfd.Dup), and reads its options. Options the socket never
// set read as its namespace's sysctls, which is exactly what the kernel uses.
func (p pidfd) read(fd int, ino uint64) (options, error) {
	nfd, err := sockfd.Dup(int(p), fd, ino)
	if err != nil {
		return options{}, err
	}
	defer unix.Close(nfd)
	return readOptions(nfd)
}

// readOptions reads the keepalive options of an open socket. Whether it is
// an MPTCP socket comes from the MPTCP dump (or isTCP for sockets found
// outside it), and its namespace from SIOCGSKNS only where it is not
// known: a socket found by inode in a namespace's dump lives there (socket
// inodes are unique host-wide), so the hot path costs no extra syscalls.
func readOptions(nfd int) (options, error) {
	var o options
	ka, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return o, err
	}
	o.keepalive = ka != 0
	if o.idle, err = unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); err != nil {
		return o, err
	}
	if o.intvl, err = unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); err != nil {
		return o, err
	}
	if o.cnt, err = unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT); err != nil {
		return o, err
	}
	o.userTimeout, err = unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	if unsupported(err) {
		// Not a missing privilege: the protocol has no such option.
		o.userTimeout, o.noUserTimeout, err = 0, true, nil
	}
	return o, err
}

// unsupported reports whether err means the socket's protocol lacks an option.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)
}

// denied reports whether err means the caller lacks the right to duplicate
// descriptors, as opposed to the process or descriptor being gone.
func denied(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS)
}
