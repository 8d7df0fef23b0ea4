package preload

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// opts is a socket's keepalive state as the tests compare it.
type opts struct {
	Keepalive, Idle, Intvl, Cnt, UserTimeout int // user timeout in ms
}

func (o opts) String() string {
	return fmt.Sprintf("keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d", o.Keepalive, o.Idle, o.Intvl, o.Cnt, o.UserTimeout)
}

func fromSocket(s Socket) opts {
	ka := 0
	if s.Keepalive {
		ka = 1
	}
	return opts{ka, int(s.Idle / time.Second), int(s.Interval / time.Second), s.Count, int(s.UserTimeout / time.Millisecond)}
}

// parseOpts reads a line printed by testdata/client.c or testdata/client.py.
func parseOpts(t *testing.T, line string) opts {
	t.Helper()
	var o opts
	var what string
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "%s keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d",
		&what, &o.Keepalive, &o.Idle, &o.Intvl, &o.Cnt, &o.UserTimeout); err != nil {
		t.Fatalf("cannot parse client line %q: %v", line, err)
	}
	return o
}

// kernelDefaults are the host netns's keepalive sysctls: what a setting the
// library leaves alone reads as.
func kernelDefaults(t *testing.T) opts {
	t.Helper()
	read := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return opts{0, read("tcp_keepalive_time"), read("tcp_keepalive_intvl"), read("tcp_keepalive_probes"), 0}
}

var (
	tmpOnce sync.Once
	tmpDir  string
	builds  sync.Map // compiler -> *buildResult
)

type buildResult struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

func sharedTemp(t *testing.T) string {
	tmpOnce.Do(func() {
		var err error
		tmpDir, err = os.MkdirTemp("", "kadiag-preload-test-")
		if err != nil {
			panic(err)
		}
	})
	return tmpDir
}

func TestMain(m *testing.M) {
	if addr := os.Getenv("KADIAG_TEST_GO_HOLD"); addr != "" {
		// The test binary as a Go program under test: connect, say so, wait.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("connected")
		io.Copy(io.Discard, os.Stdin)
		c.Close()
		os.Exit(0)
	}
	code := m.Run()
	// What the tests built once for all of them (sanitize_test.go's
	// harness and sanitised library too) goes with them.
	for _, d := range []string{tmpDir, dirOf(harnessPath), dirOf(asanLibPath)} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// dirOf is the directory of a file built into its own temporary one, or
// "" when it was not built.
func dirOf(path string) string {
	if path == "" {
		return ""
	}
	return filepath.Dir(path)
}

// client compiles testdata/client.c with compiler (gcc, musl-gcc,
// aarch64-linux-gnu-gcc) once per test binary.
func client(t *testing.T, compiler string) string {
	t.Helper()
	testenv.Need(t, compiler)
	v, _ := builds.LoadOrStore(compiler, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(sharedTemp(t), "client-"+compiler)
		b.out, b.err = exec.Command(compiler, "-Wall", "-Werror", "-O1", "-pthread", "-o", b.path, "testdata/client.c").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("%s testdata/client.c: %v\n%s", compiler, b.err, b.out)
	}
	return b.path
}

// lib extracts the embedded library for target, exercising Extract.
func lib(t *testing.T, target Target) string {
	t.Helper()
	p, err := Extract(t.TempDir(), target)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// listen accepts connections on loopback and holds them until the test ends.
func listen(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// proc is a running client that printed its first line and waits for stdin
// to close.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *strings.Builder
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(cleanEnviron(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func (p *proc) line(t *testing.T) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := p.out.ReadString('\n'); ch <- res{s, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%v: no output line: %v; stderr: %s", p.cmd.Args, r.err, p.stderr)
		}
		return r.s
	case <-time.After(20 * time.Second):
		t.Fatalf("%v: no output within 20s; stderr: %s", p.cmd.Args, p.stderr)
	}
	return ""
}

// outside reads the process's TCP sockets from outside, with the code of
// `kadiag sockets` (inspect: inet_diag + pidfd_getfd), and returns the
// options of the matching one.
func outside(t *testing.T, pid int, match func(Socket) bool) opts {
	t.Helper()
	socks, err := TCPSockets(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if match(s) {
			return fromSocket(s)
		}
	}
	t.Fatalf("pid %d: no matching TCP socket among %+v", pid, socks)
	return opts{}
}

func remoteIs(addr string) func(Socket) bool {
	return func(s Socket) bool { return s.Remote == addr }
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestSymbolVersions(t *testing.T) {
	for _, target := range Targets {
		t.Run(target.String(), func(t *testing.T) {
			f, err := elf.Open(filepath.Join("lib", target.String(), LibraryName))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			syms, err := f.DynamicSymbols()
			if err != nil {
				t.Fatal(err)
			}
			needed, _ := f.ImportedLibraries()
			var versioned int
			for _, s := range syms {
				if !strings.HasPrefix(s.Version, "GLIBC_") {
					continue
				}
				versioned++
				if newerThan217(t, s.Version) {
					t.Errorf("%s binds %s@%s: will not load on glibc 2.17 (RHEL 7, Amazon Linux 2)", target, s.Name, s.Version)
				}
			}
			switch target.Libc {
			case Glibc:
				if versioned == 0 {
					t.Errorf("%s: no GLIBC_ symbol versions read; the check would pass vacuously", target)
				}
				if !contains(needed, "libdl.so.2") || !contains(needed, "libc.so.6") {
					t.Errorf("%s needs %v; want libc.so.6 and libdl.so.2 (dlsym on glibc < 2.34)", target, needed)
				}
			case Musl:
				if versioned != 0 || !contains(needed, "libc.so") {
					t.Errorf("%s: %d glibc-versioned symbols, needs %v; want none and musl's libc.so", target, versioned, needed)
				}
			}
			wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[target.Arch]
			if f.Machine != wantMachine {
				t.Errorf("%s is %v, want %v", target, f.Machine, wantMachine)
			}
			for _, name := range []string{"socket", "setsockopt"} {
				if !exported(syms, name) {
					t.Errorf("%s does not export %s", target, name)
				}
			}
		})
	}
}

func newerThan217(t *testing.T, v string) bool {
	parts := strings.Split(strings.TrimPrefix(v, "GLIBC_"), ".")
	if len(parts) < 2 {
		return false // GLIBC_PRIVATE and such: a failure of its own kind
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Errorf("unexpected symbol version %q", v)
		return true
	}
	return major > 2 || (major == 2 && minor > 17)
}

func TestNewerThan217(t *testing.T) {
	for v, want := range map[string]bool{"GLIBC_2.2.5": false, "GLIBC_2.17": false, "GLIBC_2.34": true, "GLIBC_2.18": true, "GLIBC_3.0": true} {
		if got := newerThan217(t, v); got != want {
			t.Errorf("newerThan217(%s) = %v", v, got)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func exported(syms []elf.Symbol, name string) bool {
	for _, s := range syms {
		if s.Name == name && s.Section != elf.SHN_UNDEF && elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
			return true
		}
	}
	return false
}

func dial(host, port string) (net.Conn, error) {
	return net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
}
