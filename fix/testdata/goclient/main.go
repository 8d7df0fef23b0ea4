// Command goclient is a Go client for kadiag fix's tests: KeepAlive -1
// (keepalive off, which LD_PRELOAD cannot change in a Go binary), the same
// protocol as client.c.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp", net.JoinHostPort(os.Args[1], os.Args[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rc, _ := c.(*net.TCPConn).SyscallConn()
	off := func() {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0) })
	}
	dump := func() {
		rc.Control(func(fd uintptr) {
			g := func(l, n int) int { v, _ := unix.GetsockoptInt(int(fd), l, n); return v }
			fmt.Printf("{\"fd\":%d,\"keepalive\":%d,\"idle\":%d,\"intvl\":%d,\"cnt\":%d,\"user_timeout\":%d}\n", fd,
				g(unix.SOL_SOCKET, unix.SO_KEEPALIVE), g(unix.SOL_TCP, unix.TCP_KEEPIDLE), g(unix.SOL_TCP, unix.TCP_KEEPINTVL),
				g(unix.SOL_TCP, unix.TCP_KEEPCNT), g(unix.SOL_TCP, unix.TCP_USER_TIMEOUT))
		})
	}
	if len(os.Args) > 3 && os.Args[3] == "off" {
		off()
	}
	dump()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "off") {
			off()
		}
		dump()
	}
}
