package fix

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/bpf/bpftest"
	"github.com/kadiag/kadiag/internal/testenv"
)

// lab is a server namespace and a client namespace on a veth pair: the
// client's peer is beyond its host as far as kadiag can tell, so its
// sockets are targets without --all-sockets, and the client lives in a
// network namespace other than kadiag's.
type lab struct {
	server, client *testenv.Netns
	link           testenv.Link
	port4, port6   int
	mu             sync.Mutex
	conns          []net.Conn
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{server: testenv.NewNetns(t), client: testenv.NewNetns(t)}
	l.link = testenv.Connect(t, l.server, l.client, 151)
	for _, a := range []struct {
		addr string
		port *int
	}{{l.link.A4, &l.port4}, {"[" + l.link.A6 + "]", &l.port6}} {
		var ln net.Listener
		if err := l.server.Do(func() (err error) { ln, err = net.Listen("tcp", a.addr+":0"); return err }); err != nil {
			t.Fatal(err)
		}
		*a.port = ln.Addr().(*net.TCPAddr).Port
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				l.mu.Lock()
				l.conns = append(l.conns, c)
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			c.Close()
		}
	})
	return l
}

// sockOpts is what a test client reads about its own socket.
type sockOpts struct {
	FD          int `json:"fd"`
	Keepalive   int `json:"keepalive"`
	Idle        int `json:"idle"`
	Intvl       int `json:"intvl"`
	Cnt         int `json:"cnt"`
	UserTimeout int `json:"user_timeout"`
}

// client is a test client process (see testdata): it reports its sockets'
// options, read in-process, for every line written to it.
type client struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	first []sockOpts
}

func (c *client) pid() int { return c.cmd.Process.Pid }

func (c *client) read(t *testing.T) []sockOpts {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("client %d ended: %v", c.pid(), c.out.Err())
	}
	line := c.out.Bytes()
	var list []sockOpts
	if len(line) > 0 && line[0] == '{' {
		var one sockOpts
		if err := json.Unmarshal(line, &one); err != nil {
			t.Fatalf("client said %q: %v", line, err)
		}
		return []sockOpts{one}
	}
	if err := json.Unmarshal(line, &list); err != nil {
		t.Fatalf("client said %q: %v", line, err)
	}
	return list
}

// ask sends a line (e.g. "dump", "off", "accept") and returns the answer.
func (c *client) ask(t *testing.T, line string) []sockOpts {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		t.Fatal(err)
	}
	return c.read(t)
}

var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string
}

// build compiles a test client once per test binary.
func build(t *testing.T, kind string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.bins[kind]; ok {
		return p
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "kadiag-fix-test")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
		builds.dir, builds.bins = d, map[string]string{}
	}
	out := filepath.Join(builds.dir, kind)
	var cmd *exec.Cmd
	switch kind {
	case "c":
		testenv.Need(t, "musl-gcc")
		cmd = exec.Command("musl-gcc", "-static", "-O1", "-o", out, "testdata/client.c")
	case "go":
		cmd = exec.Command("go", "build", "-o", out, "./testdata/goclient")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s client: %v\n%s", kind, err, b)
	}
	if kind == "c" {
		// The point of this client: no dynamic loader, so no LD_PRELOAD.
		f, err := elf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Fatalf("%s has an ELF interpreter: not static", out)
			}
		}
	}
	builds.bins[kind] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// startClient starts a client of the given kind ("c" static, "go",
// "python", "java") in the lab's client namespace, inside cgroup dir when
// dir is not "", connecting to host:port with extra arguments.
func (l *lab) startClient(t *testing.T, kind, dir, host string, port int, extra ...string) *client {
	t.Helper()
	args := []string{host, strconv.Itoa(port)}
	var name string
	switch kind {
	case "c", "go":
		name = build(t, kind)
	case "python":
		testenv.Need(t, "python3")
		name = "python3"
		args = append([]string{"testdata/client.py"}, args...)
	case "java":
		testenv.Need(t, "java")
		name = "java"
		args = append([]string{"testdata/Client.java"}, args...)
	}
	args = append(args, extra...)
	cmd := l.client.Command(name, args...)
	if dir != "" {
		bpftest.Into(t, cmd, dir)
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := &client{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.first = c.read(t)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s client did not start", kind)
	}
	return c
}

var ssIno = regexp.MustCompile(`ino:(\d+)`)

// ssLine returns the line `ss -tonie` prints, inside the client namespace,
// for the socket with this inode (an oracle nobody here wrote).
func (l *lab) ssLine(t *testing.T, inode uint64) string {
	t.Helper()
	testenv.Need(t, "ss", "ip")
	out, err := exec.Command("ip", "netns", "exec", l.client.Name, "ss", "-tonie").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := ssIno.FindStringSubmatch(line); m != nil && m[1] == strconv.FormatUint(inode, 10) {
			return line
		}
	}
	t.Fatalf("ss -tonie shows no socket ino:%d:\n%s", inode, out)
	return ""
}

// keepaliveTimer is the keepalive timer ss shows: timer:(keepalive,59sec,0).
var keepaliveTimer = regexp.MustCompile(`timer:\(keepalive,(\d+)(min|sec|ms)`)

// ssKeepalive returns the seconds left on the socket's keepalive timer as
// ss shows it, or -1 when ss shows none.
func (l *lab) ssKeepalive(t *testing.T, inode uint64) int {
	t.Helper()
	m := keepaliveTimer.FindStringSubmatch(l.ssLine(t, inode))
	if m == nil {
		return -1
	}
	v, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "min":
		v *= 60
	case "ms":
		v /= 1000
	}
	return v
}

func inodeOf(t *testing.T, pid, fd int) uint64 {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64)
	if err != nil {
		t.Fatalf("fd %d is %s", fd, l)
	}
	return v
}

// connectedInode returns the inode of pid's one socket connected to remote,
// found with a dry-run fix (its listing reads every socket of the process).
func connectedInode(t *testing.T, pid int, remote string) uint64 {
	t.Helper()
	r, err := PID(pid, LiveOptions{Settings: DefaultSettings(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Sockets {
		if s.Remote == remote {
			return s.Inode
		}
	}
	t.Fatalf("pid %d has no socket to %s: %+v", pid, remote, r.Sockets)
	return 0
}
