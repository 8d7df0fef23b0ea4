package path

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rawConn is what the socket options below need of a connection.
type rawConn interface {
	SyscallConn() (syscall.RawConn, error)
}

func control(c net.Conn, f func(fd int) error) error {
	rc, ok := c.(rawConn)
	if !ok {
		return errors.New("not a TCP socket")
	}
	raw, err := rc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// tcpInfo reads the kernel's TCP_INFO of c.
func tcpInfo(c net.Conn) (*unix.TCPInfo, error) {
	var ti *unix.TCPInfo
	err := control(c, func(fd int) error {
		var err error
		ti, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err
	})
	return ti, err
}

// lastPacket is when c last saw a packet either way, from TCP_INFO: the
// counterpart times a to-client idle from it, as the middlebox does.
func lastPacket(c net.Conn, now time.Time) (time.Time, *unix.TCPInfo, error) {
	ti, err := tcpInfo(c)
	if err != nil {
		return now, nil, err
	}
	ago := min(ti.Last_data_recv, ti.Last_ack_recv, ti.Last_data_sent)
	return now.Add(-time.Duration(ago) * time.Millisecond), ti, nil
}

// setKeepalive arms kernel keepalive probes every d on c (idle and interval).
func setKeepalive(c net.Conn, d time.Duration, cnt int) error {
	s := max(int(d/time.Second), 1)
	return control(c, func(fd int) error {
		for _, o := range [][3]int{
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, s},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, s},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, cnt},
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		} {
			if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
				return err
			}
		}
		return nil
	})
}

// probeNow makes the kernel send one keepalive probe on c right away: with
// SO_KEEPALIVE on, setting TCP_KEEPIDLE below the time c has already been
// idle re-arms the keepalive timer for zero. The probe is an empty segment
// the peer's kernel must ACK: a to-server test that writes nothing into a
// plain server's protocol, sent at a fractional idle (the option itself is
// whole seconds) and not subject to the timer wheel's slack on long timers.
func probeNow(c net.Conn) error {
	return control(c, func(fd int) error {
		for _, o := range [][3]int{
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 3600},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 1},
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1},
		} {
			if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
				return err
			}
		}
		return nil
	})
}

// sockErr reads and clears c's pending socket error (ECONNRESET after a RST).
func sockErr(c net.Conn) error {
	var soerr int
	err := control(c, func(fd int) error {
		var err error
		soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		return err
	})
	if err != nil {
		return err
	}
	if soerr != 0 {
		return syscall.Errno(soerr)
	}
	return nil
}

// abort closes c with an RST, so a connection whose test is over holds
// nothing in the kernel (no FIN_WAIT retransmitting into a dead flow).
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// isReset reports whether err is a reset seen by this end.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readable reports whether bytes wait in c's receive queue. A read whose
// deadline fired while its goroutine waited for a CPU returns a timeout even
// when the bytes came in time; this tells the two apart.
func readable(c net.Conn) bool {
	n := 0
	control(c, func(fd int) error {
		var b [1]byte
		n, _, _ = unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return nil
	})
	return n > 0
}
