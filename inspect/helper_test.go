package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a helper process that opens sockets with exact
// options set through raw syscalls, reports what getsockopt reads inside
// itself, and holds the sockets until its stdin closes.
func TestMain(m *testing.M) {
	switch os.Getenv("KADIAG_SOCK_HELPER") {
	case "1":
		os.Exit(sockHelper(os.Args[1:]))
	case "scan":
		os.Exit(scanHelper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// scanHelper runs a scan in this process (started as another user) and
// prints its JSON: "netns PATH MAXIDLE_MS".
func scanHelper(args []string) int {
	ms, _ := strconv.Atoi(args[2])
	o := Options{MaxIdle: time.Duration(ms) * time.Millisecond}
	var r *Report
	var err error
	if args[0] == "pid" {
		pid, _ := strconv.Atoi(args[1])
		r, err = ScanPIDs([]int{pid}, o)
	} else {
		r, err = ScanNetns(args[1], o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// helperSocket is what the helper reads back with getsockopt in-process.
type helperSocket struct {
	Spec        string `json:"spec"`
	FD          int    `json:"fd"`
	LocalPort   int    `json:"local_port"`
	Keepalive   int    `json:"keepalive"`
	Idle        int    `json:"idle"`
	Intvl       int    `json:"intvl"`
	Cnt         int    `json:"cnt"`
	UserTimeout int    `json:"user_timeout"`
	// UserTimeoutErr is getsockopt(TCP_USER_TIMEOUT)'s error (MPTCP has none).
	UserTimeoutErr string `json:"user_timeout_err"`
	Protocol       int    `json:"protocol"` // SO_PROTOCOL
}

// sockHelper specs: KIND,ADDR[,ka=1][,idle=N][,intvl=N][,cnt=N][,ut=MS]
// with KIND dial4, dial6, listen4, listen6 or serve (a listener that
// accepts and holds every connection).
func sockHelper(specs []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "helper: "+format+"\n", a...)
		return 3
	}
	out := json.NewEncoder(os.Stdout)
	if len(specs) == 3 && specs[0] == "many" {
		// many ADDR N: N connections, keepalive on every other one, quietly.
		n, _ := strconv.Atoi(specs[2])
		var held []net.Conn
		for i := 0; i < n; i++ {
			d := net.Dialer{KeepAlive: -1}
			if i%2 == 0 {
				d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: 10 * time.Second, Count: 5}
			}
			c, err := d.Dial("tcp", specs[1])
			if err != nil {
				return fail("connection %d: %v", i, err)
			}
			held = append(held, c)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		runtime.KeepAlive(held)
		return 0
	}
	for _, spec := range specs {
		parts := strings.Split(spec, ",")
		kind, ap := parts[0], netip.MustParseAddrPort(parts[1])
		fam := unix.AF_INET6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		if ap.Addr().Is4() {
			fam = unix.AF_INET
			sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		}
		proto := 0
		if slices.Contains(parts[2:], "mptcp") {
			proto = ipprotoMPTCP
		}
		fd, err := unix.Socket(fam, unix.SOCK_STREAM, proto)
		if err != nil {
			return fail("socket: %v", err)
		}
		for _, opt := range parts[2:] {
			k, v, _ := strings.Cut(opt, "=")
			n, _ := strconv.Atoi(v)
			level, name := unix.IPPROTO_TCP, 0
			switch k {
			case "mptcp":
				continue
			case "ka":
				level, name = unix.SOL_SOCKET, unix.SO_KEEPALIVE
			case "idle":
				name = unix.TCP_KEEPIDLE
			case "intvl":
				name = unix.TCP_KEEPINTVL
			case "cnt":
				name = unix.TCP_KEEPCNT
			case "ut":
				name = unix.TCP_USER_TIMEOUT
			default:
				return fail("unknown option %q", k)
			}
			if err := unix.SetsockoptInt(fd, level, name, n); err != nil {
				return fail("setsockopt %s: %v", opt, err)
			}
		}
		switch kind {
		case "dial4", "dial6":
			err = unix.Connect(fd, sa)
		default:
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if err = unix.Bind(fd, sa); err == nil {
				err = unix.Listen(fd, 128)
			}
			if kind == "chatter" && err == nil {
				// Accept, and send one byte every 200 ms on every connection.
				go func(fd int) {
					for {
						c, _, err := unix.Accept(fd)
						if err != nil {
							return
						}
						go func() {
							for range time.Tick(200 * time.Millisecond) {
								if _, err := unix.Write(c, []byte{'x'}); err != nil {
									return
								}
							}
						}()
					}
				}(fd)
			}
			if kind == "serve" && err == nil {
				go func(fd int) {
					for {
						if _, _, err := unix.Accept(fd); err != nil {
							return
						}
					}
				}(fd)
			}
		}
		if err != nil {
			return fail("%s: %v", spec, err)
		}
		h := helperSocket{Spec: spec, FD: fd}
		if lsa, err := unix.Getsockname(fd); err == nil {
			switch a := lsa.(type) {
			case *unix.SockaddrInet4:
				h.LocalPort = a.Port
			case *unix.SockaddrInet6:
				h.LocalPort = a.Port
			}
		}
		h.Keepalive, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		h.Idle, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		h.Intvl, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		h.Cnt, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		if h.UserTimeout, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); err != nil {
			h.UserTimeoutErr = err.Error()
		}
		h.Protocol, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		out.Encode(h)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// started is a running helper or client program.
type started struct {
	cmd     *exec.Cmd
	pid     int
	lines   []string // stdout lines before "ready"
	sockets []helperSocket
}

// start runs cmd, waits for a line "ready" on its stdout and keeps it
// running until the test ends.
func start(t testing.TB, cmd *exec.Cmd) *started {
	t.Helper()
	s := &started{cmd: cmd, lines: testenv.StartReady(t, cmd)}
	s.pid = cmd.Process.Pid
	for _, l := range s.lines {
		var h helperSocket
		if json.Unmarshal([]byte(l), &h) == nil && h.Spec != "" {
			s.sockets = append(s.sockets, h)
		}
	}
	return s
}

// helper returns a command that runs the helper inside n.
func helper(n *testenv.Netns, specs ...string) *exec.Cmd {
	cmd := n.Command(os.Args[0], specs...)
	cmd.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=1")
	return cmd
}
