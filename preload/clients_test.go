package preload

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

var (
	amd64Glibc = Target{Glibc, "amd64"}
	amd64Musl  = Target{Musl, "amd64"}
	arm64Glibc = Target{Glibc, "arm64"}
)

// clientCase is one environment and application behaviour with the options
// every managed socket must then carry.
type clientCase struct {
	name string
	env  []string
	app  string // "", weaken (SO_KEEPALIVE 0, 7200/75/9), strengthen (1/1/1, 500 ms)
	want func(kernel opts) opts
}

func configured(idle, intvl, cnt, ut int) func(opts) opts {
	return func(opts) opts { return opts{1, idle, intvl, cnt, ut} }
}

var clientCases = []clientCase{
	{"defaults", nil, "", configured(60, 15, 4, 0)},
	{"kadiag-vars", []string{"KADIAG_KEEPIDLE=2m", "KADIAG_KEEPINTVL=7s", "KADIAG_KEEPCNT=3", "KADIAG_USER_TIMEOUT=1500ms"}, "", configured(120, 7, 3, 1500)},
	{"bare-vars", []string{"KEEPIDLE=30", "KEEPINTVL=5", "KEEPCNT=2"}, "", configured(30, 5, 2, 0)},
	{"kadiag-wins", []string{"KEEPIDLE=30", "KADIAG_KEEPIDLE=1h", "KEEPCNT=2", "KADIAG_KEEPCNT=9"}, "", configured(3600, 15, 9, 0)},
	{"user-timeout-seconds", []string{"KADIAG_USER_TIMEOUT=90s"}, "", configured(60, 15, 4, 90000)},
	{"enforce-weakened", []string{"KADIAG_USER_TIMEOUT=5s"}, "weaken", configured(60, 15, 4, 5000)},
	{"enforce-keeps-stronger", []string{"KADIAG_USER_TIMEOUT=5s"}, "strengthen", configured(1, 1, 1, 500)},
	{"enforce-off", []string{"KADIAG_ENFORCE=0"}, "weaken", func(opts) opts { return opts{0, 7200, 75, 9, 0} }},
	{"keepalive-off", []string{"KADIAG_KEEPALIVE=off", "KADIAG_KEEPIDLE=5"}, "", func(k opts) opts { return k }},
	{"keepalive-off-weaken", []string{"KADIAG_KEEPALIVE=off"}, "weaken", func(opts) opts { return opts{0, 7200, 75, 9, 0} }},
}

// runClientCases runs the C client built with compiler, with the library
// for target, in every case for IPv4 and IPv6, blocking and
// SOCK_NONBLOCK|SOCK_CLOEXEC, and compares the client's own getsockopt view
// and the outside view (kadiag sockets' inspect package) with the configured values.
func runClientCases(t *testing.T, compiler string, target Target, wrap func(env []string, args ...string) (string, []string, []string)) {
	testenv.Privileged(t)
	bin := client(t, compiler)
	so := lib(t, target)
	kernel := kernelDefaults(t)
	addrs := map[string]string{"tcp4": listen(t, "tcp4", "127.0.0.1:0"), "tcp6": listen(t, "tcp6", "[::1]:0")}
	for _, c := range clientCases {
		for _, fam := range []string{"tcp4", "tcp6"} {
			for _, flags := range []string{"", "nonblock"} {
				name := c.name + "/" + fam
				if flags != "" {
					name += "/" + flags
				}
				t.Run(name, func(t *testing.T) {
					host, port := hostPort(t, addrs[fam])
					args := []string{fam, host, port, "_"}
					if flags != "" {
						args = append(args, flags)
					}
					if c.app != "" {
						args = append(args, c.app)
					}
					env := append([]string{"LD_PRELOAD=" + so}, c.env...)
					name, args, env := wrap(env, append([]string{bin}, args...)...)
					p := start(t, env, name, args...)
					in := parseOpts(t, p.line(t))
					out := outside(t, p.cmd.Process.Pid, remoteIs(addrs[fam]))
					want := c.want(kernel)
					if in != want {
						t.Errorf("inside (getsockopt in the client): %v, want %v", in, want)
					}
					if out != want {
						t.Errorf("outside (kadiag sockets): %v, want %v", out, want)
					}
				})
			}
		}
	}
}

func native(env []string, args ...string) (string, []string, []string) {
	return args[0], args[1:], env
}

func TestCClientGlibc(t *testing.T) { runClientCases(t, "gcc", amd64Glibc, native) }

func TestCClientMusl(t *testing.T) { runClientCases(t, "musl-gcc", amd64Musl, native) }

// TestCClientAarch64 runs the aarch64 build under qemu-user. LD_PRELOAD and
// the settings go to the emulated process with -E, so the host's qemu binary
// does not try to load an aarch64 library.
func TestCClientAarch64(t *testing.T) {
	testenv.Need(t, "qemu-aarch64")
	if _, err := os.Stat("/usr/aarch64-linux-gnu/lib/libc.so.6"); err != nil {
		testenv.SkipOrFail(t, "needs libc6-dev-arm64-cross (/usr/aarch64-linux-gnu)")
	}
	runClientCases(t, "aarch64-linux-gnu-gcc", arm64Glibc, func(env []string, args ...string) (string, []string, []string) {
		q := []string{"-L", "/usr/aarch64-linux-gnu"}
		for _, e := range env {
			q = append(q, "-E", e)
		}
		return "qemu-aarch64", append(q, args...), nil
	})
}

// TestAcceptedInherit checks the choice not to hook accept(): a listener
// made by socket() carries the options, and accepted sockets inherit them,
// also when the application weakened the listener (enforce mode).
func TestAcceptedInherit(t *testing.T) {
	testenv.Privileged(t)
	bin := client(t, "gcc")
	so := lib(t, amd64Glibc)
	for _, fam := range []string{"4", "6"} {
		for _, app := range []string{"", "weaken"} {
			t.Run(fam+"/"+app, func(t *testing.T) {
				args := []string{"listen" + fam}
				if app != "" {
					args = append(args, app)
				}
				p := start(t, []string{"LD_PRELOAD=" + so, "KADIAG_KEEPIDLE=45", "KADIAG_KEEPINTVL=9", "KADIAG_KEEPCNT=5", "KADIAG_USER_TIMEOUT=3s"}, bin, args...)
				port := strings.TrimSpace(strings.TrimPrefix(p.line(t), "port "))
				host := map[string]string{"4": "127.0.0.1", "6": "::1"}[fam]
				conn, err := dial(host, port)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				in := parseOpts(t, p.line(t))
				want := opts{1, 45, 9, 5, 3000}
				if in != want {
					t.Errorf("accepted socket: %v, want %v", in, want)
				}
				out := outside(t, p.cmd.Process.Pid, remoteIs(conn.LocalAddr().String()))
				if out != want {
					t.Errorf("accepted socket from outside: %v, want %v", out, want)
				}
			})
		}
	}
}

// TestOthersUntouched: UDP, UNIX, RAW (also with IPPROTO_TCP) and SCTP
// sockets keep SO_KEEPALIVE off, exactly as without the library.
func TestOthersUntouched(t *testing.T) {
	testenv.Privileged(t) // raw sockets
	for _, tc := range []struct{ compiler string }{{"gcc"}, {"musl-gcc"}} {
		bin := client(t, tc.compiler)
		target := amd64Glibc
		if tc.compiler == "musl-gcc" {
			target = amd64Musl
		}
		so := lib(t, target)
		without, err := exec.Command(bin, "others").Output()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "others")
		cmd.Env = append(cleanEnviron(), "LD_PRELOAD="+so, "KADIAG_DEBUG=1")
		with, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(with) != string(without) {
			t.Errorf("%s: with the library\n%s\nwithout\n%s", tc.compiler, with, without)
		}
		if strings.Contains(string(with), "keepalive=1") || !strings.Contains(string(with), "udp4 keepalive=0") {
			t.Errorf("%s: unexpected option state:\n%s", tc.compiler, with)
		}
	}
}

// TestErrnoPreserved compares errno after succeeding and failing socket()
// and setsockopt() calls with and without the library, also when the
// library's own writes fail (stderr closed with KADIAG_DEBUG=1: fd 2 is then
// the application's socket, which the library must not write to).
func TestErrnoPreserved(t *testing.T) {
	for _, tc := range []struct {
		compiler string
		target   Target
	}{{"gcc", amd64Glibc}, {"musl-gcc", amd64Musl}} {
		bin := client(t, tc.compiler)
		so := lib(t, tc.target)
		without, err := exec.Command(bin, "errno").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range [][]string{
			nil,
			{"KADIAG_USER_TIMEOUT=2s", "KADIAG_DEBUG=1"},
			{"KADIAG_ENFORCE=0"},
		} {
			for _, closed := range []bool{false, true} {
				// LD_PRELOAD is set for the client only: the musl build does
				// not load into the (glibc) shell.
				script := `LD_PRELOAD="$1" exec "$0" errno`
				if closed {
					script += ` 2>&-`
				}
				cmd := exec.Command("sh", "-c", script, bin, so)
				cmd.Env = append(cleanEnviron(), env...)
				with, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s %v closed=%v: %v", tc.compiler, env, closed, err)
				}
				if string(with) != string(without) {
					t.Errorf("%s %v stderr closed=%v: with the library\n%s\nwithout\n%s", tc.compiler, env, closed, with, without)
				}
			}
		}
		if !strings.Contains(string(without), "socket-eafnosupport r=-1 errno=97") {
			t.Errorf("errno client output unexpected:\n%s", without)
		}
	}
}

// TestSSOracle asks ss, which nobody here wrote, for the kernel's view: with
// the library the client's connection has its keepalive timer armed, due
// within the configured idle time; without it, no timer.
func TestSSOracle(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "ss")
	bin := client(t, "gcc")
	so := lib(t, amd64Glibc)
	for _, a := range [][2]string{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		addr := listen(t, a[0], a[1])
		host, port := hostPort(t, addr)
		for _, withLib := range []bool{true, false} {
			env := []string{"KADIAG_KEEPIDLE=30"}
			if withLib {
				env = append(env, "LD_PRELOAD="+so)
			}
			p := start(t, env, bin, a[0], host, port, "_")
			p.line(t)
			// The client's side of the connection: its peer is the listener.
			out, err := exec.Command("ss", "-tnoH", "state", "established", "dst", addr).CombinedOutput()
			if err != nil {
				t.Fatalf("ss: %v\n%s", err, out)
			}
			line := strings.TrimSpace(string(out))
			if strings.Count(line, "\n") != 0 || line == "" {
				t.Fatalf("ss: want one connection to %s, got %q", addr, out)
			}
			i := strings.Index(line, "timer:(keepalive,")
			if !withLib {
				if i >= 0 {
					t.Errorf("%s without the library: %q has a keepalive timer", a[0], line)
				}
				continue
			}
			if i < 0 {
				t.Errorf("%s with the library: ss shows no keepalive timer: %q", a[0], line)
				continue
			}
			var secs int
			if _, err := fmt.Sscanf(line[i:], "timer:(keepalive,%dsec", &secs); err != nil || secs > 30 || secs < 20 {
				t.Errorf("%s: keepalive timer %q, want due within 30s (KADIAG_KEEPIDLE=30)", a[0], line[i:])
			}
			p.stdin.Close()
		}
	}
}

// TestThreads: eight threads opening TCP sockets at once all get the options.
func TestThreads(t *testing.T) {
	for _, tc := range []struct {
		compiler string
		target   Target
	}{{"gcc", amd64Glibc}, {"musl-gcc", amd64Musl}} {
		bin := client(t, tc.compiler)
		cmd := exec.Command(bin, "threads", "2000")
		cmd.Env = append(cleanEnviron(), "LD_PRELOAD="+lib(t, tc.target), "KADIAG_KEEPIDLE=42")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "threads keepalive=1 idle=42 bad=0" {
			t.Errorf("%s: %q", tc.compiler, got)
		}
	}
}

// TestMPTCPManaged: IPPROTO_MPTCP stream sockets cross the same middleboxes
// and are managed too, with the keepalive options only (MPTCP has no
// TCP_USER_TIMEOUT): checked with getsockopt inside the client, with
// kadiag's outside view and with ss -tonie (issue 12 item 1). The listener
// is Go's, an MPTCP one since Go 1.24, so the connection is MPTCP end to end.
func TestMPTCPManaged(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "ss")
	for _, tc := range []struct {
		compiler string
		target   Target
	}{{"gcc", amd64Glibc}, {"musl-gcc", amd64Musl}} {
		t.Run(tc.compiler, func(t *testing.T) {
			bin := client(t, tc.compiler)
			so := lib(t, tc.target)
			addr := listen(t, "tcp4", "127.0.0.1:0")
			host, port := hostPort(t, addr)
			p := start(t, []string{"LD_PRELOAD=" + so, "KADIAG_USER_TIMEOUT=5s"}, bin, "tcp4", host, port, "_", "mptcp")
			in := parseOpts(t, p.line(t))
			want := opts{1, 60, 15, 4, -int(unix.EOPNOTSUPP)}
			if in != want {
				t.Errorf("inside (getsockopt in the client): %v, want %v (TCP_USER_TIMEOUT: EOPNOTSUPP)", in, want)
			}
			out := outside(t, p.cmd.Process.Pid, remoteIs(addr))
			if want.UserTimeout = 0; out != want {
				t.Errorf("outside (kadiag sockets): %v, want %v", out, want)
			}
			// preload check: the configured user timeout cannot apply to an
			// MPTCP socket, which is no reason to call the library ineffective.
			c, err := Check(p.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.Sockets {
				if s.Remote == addr && !s.OK {
					t.Errorf("preload check: MPTCP socket %+v: %s", s.Socket, s.Problem)
				}
			}
			ss, err := exec.Command("ss", "-tonie", "state", "established", "dst", addr).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(ss), "timer:(keepalive,") {
				t.Errorf("ss -tonie shows no keepalive timer on the client's subflow:\n%s", ss)
			}
		})
	}
}
