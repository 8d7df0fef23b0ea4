package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
)

// python3 is the system interpreter: a per-user shim (pyenv) is not
// executable by the unprivileged user of the tests.
func python3(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	testenv.Need(t, "python3")
	p, _ := exec.LookPath("python3")
	return p
}

// clientSocket is what a client program read back from its own sockets.
type clientSocket struct {
	FD          int `json:"fd"`
	LocalPort   int `json:"local_port"`
	Keepalive   int `json:"keepalive"`
	Idle        int `json:"idle"`
	Intvl       int `json:"intvl"`
	Cnt         int `json:"cnt"`
	UserTimeout int `json:"user_timeout"`
}

// startReady starts cmd, decodes the JSON lines it prints before "ready",
// and stops it when the test ends.
func startReady(t *testing.T, cmd *exec.Cmd) (int, []clientSocket) {
	t.Helper()
	var socks []clientSocket
	for _, l := range testenv.StartReady(t, cmd) {
		var c clientSocket
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("%v printed %q: %v", cmd.Args, l, err)
		}
		socks = append(socks, c)
	}
	return cmd.Process.Pid, socks
}

// sockLab is a client and a server namespace on veth, with a Python server
// on port 8080 that accepts connections and never answers.
type sockLab struct {
	client, server *testenv.Netns
	link           testenv.Link
	serverPID      int
}

func newSockLab(t *testing.T, subnet int) *sockLab {
	t.Helper()
	testenv.Privileged(t)
	testenv.Need(t, "nsenter", "ss")
	l := &sockLab{client: testenv.NewNetns(t), server: testenv.NewNetns(t)}
	l.link = testenv.Connect(t, l.server, l.client, subnet)
	l.serverPID, _ = startReady(t, l.server.Command(python3(t), "testdata/hold_server.py", "8080"))
	return l
}

func decodeSockets(t *testing.T, stdout string) inspect.Report {
	t.Helper()
	var r inspect.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("json output: %v\n%s", err, stdout)
	}
	if r.Schema != "kadiag.sockets/v1" {
		t.Fatalf("schema %q", r.Schema)
	}
	return r
}

// ssTimer returns the timer ss -tonie shows for a socket inode in n ("" for none).
func ssTimer(t *testing.T, n *testenv.Netns, inode uint64) string {
	t.Helper()
	out, err := n.Command("ss", "-tonie").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, fmt.Sprintf(" ino:%d ", inode)) {
			continue
		}
		if i := strings.Index(line, "timer:("); i >= 0 {
			kind, _, _ := strings.Cut(line[i+len("timer:("):], ",")
			return kind
		}
		return ""
	}
	t.Fatalf("inode %d not in ss -tonie output:\n%s", inode, out)
	return ""
}

// check compares a socket of kadiag's JSON with the client's own reading.
// Source Exact accepts either exact path (bpf where kadiag may load BPF
// iterators, getsockopt otherwise).
func check(t *testing.T, what string, got inspect.Socket, want clientSocket, source inspect.Source) {
	t.Helper()
	k := got.Keepalive
	if (source == inspect.Exact && !k.Source.IsExact()) || (source != inspect.Exact && k.Source != source) || k.Enabled != (want.Keepalive != 0) || k.IdleS != want.Idle || k.IntervalS != want.Intvl ||
		k.Count != want.Cnt || k.UserTimeoutMs != want.UserTimeout {
		t.Errorf("%s: kadiag %+v, the client read %+v", what, k, want)
	}
}

func TestSocketsPython(t *testing.T) {
	l := newSockLab(t, 81)
	pid, socks := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A6, "8080"))
	stdout, stderr, code := runKadiag(t, "sockets", "--pid", strconv.Itoa(pid), "-o", "json")
	if code != 1 || stderr != "" {
		t.Fatalf("exit %d (want 1: keepalive off is at risk), stderr %q", code, stderr)
	}
	r := decodeSockets(t, stdout)
	if len(r.Processes) != 1 || r.Processes[0].PID != pid || r.Processes[0].Comm != "python3" || len(r.Processes[0].Sockets) != 2 {
		t.Fatalf("processes %+v", r.Processes)
	}
	for i, sk := range r.Processes[0].Sockets {
		c := socks[i]
		check(t, "python fd "+strconv.Itoa(c.FD), sk, c, inspect.Exact)
		if sk.FD != c.FD || sk.Family != "inet6" || sk.State != "ESTABLISHED" || sk.Remote != "["+l.link.A6+"]:8080" ||
			sk.Local != fmt.Sprintf("[%s]:%d", l.link.B6, c.LocalPort) {
			t.Errorf("socket %+v", sk)
		}
		wantTimer := ""
		if c.Keepalive != 0 {
			wantTimer = "keepalive"
		}
		if ss := ssTimer(t, l.client, sk.Inode); ss != wantTimer || sk.Timer != ss {
			t.Errorf("fd %d: timer %q, ss %q", sk.FD, sk.Timer, ss)
		}
	}
	off, on := r.Processes[0].Sockets[0], r.Processes[0].Sockets[1]
	if off.Verdict != "at-risk" || off.Reason != "keepalive off" || on.Verdict != "ok" {
		t.Errorf("verdicts %s %q / %s %q", off.Verdict, off.Reason, on.Verdict, on.Reason)
	}
	// TCP_USER_TIMEOUT 7 s replaces the probe count: the kernel gives up at
	// the first timer after one unanswered probe, 25 + 4 s.
	if on.DeadPeerS != 29 {
		t.Errorf("dead peer %d s, want 29", on.DeadPeerS)
	}
	if r.Summary != (inspect.Summary{Sockets: 2, OK: 1, AtRisk: 1}) || r.MaxIdleS != 350 {
		t.Errorf("summary %+v max idle %d", r.Summary, r.MaxIdleS)
	}

	// Table: one line per socket and a summary line.
	stdout, _, code = runKadiag(t, "sockets", "--pid", strconv.Itoa(pid), "--max-idle", "azure-lb")
	if code != 1 || !strings.Contains(stdout, "2 sockets: 1 ok, 1 at-risk, 0 local, 0 unknown; 0 listening (max idle 240s)") ||
		!strings.Contains(stdout, "keepalive off") || !strings.Contains(stdout, "7s") {
		t.Errorf("table (exit %d):\n%s", code, stdout)
	}
	// A middlebox that forgets after 20 s outruns the 25 s idle.
	stdout, _, code = runKadiag(t, "sockets", "--pid", strconv.Itoa(pid), "--max-idle", "20s", "-o", "junit")
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(stdout), &suites); err != nil || code != 1 {
		t.Fatalf("junit exit %d: %v\n%s", code, err, stdout)
	}
	if suites.Tests != 2 || suites.Failures != 2 ||
		suites.Suites[0].Cases[1].Failure.Message != "first probe after 25s, middlebox forgets after 20s" {
		t.Errorf("junit %+v\n%s", suites, stdout)
	}
}

func TestSocketsCurl(t *testing.T) {
	l := newSockLab(t, 82)
	testenv.Need(t, "curl")
	url := "http://" + l.link.A4 + ":8080/"
	// curl waits for an answer that never comes; --keepalive-time sets both
	// the idle time and the interval (curl(1)), --no-keepalive turns it off.
	with := l.client.Command("curl", "-sS", "-m", "60", "--keepalive-time", "17", url)
	without := l.client.Command("curl", "-sS", "-m", "60", "--no-keepalive", url)
	for _, c := range []*exec.Cmd{with, without} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	var r inspect.Report
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		stdout, stderr, code := runKadiag(t, "sockets", "--pid", strconv.Itoa(with.Process.Pid), "--pid", strconv.Itoa(without.Process.Pid), "-o", "json")
		if code == 2 {
			t.Fatalf("exit 2: %s", stderr)
		}
		r = decodeSockets(t, stdout)
		if len(r.Processes) == 2 && len(r.Processes[0].Sockets) == 1 && len(r.Processes[1].Sockets) == 1 {
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl did not connect: %+v", r)
		}
	}
	on, off := r.Processes[0].Sockets[0], r.Processes[1].Sockets[0]
	k := on.Keepalive
	if !k.Enabled || k.IdleS != 17 || k.IntervalS != 17 || k.Count != 9 || !k.Source.IsExact() || on.Verdict != "ok" || on.DeadPeerS != 17+17*9 {
		t.Errorf("curl --keepalive-time 17: %+v", on)
	}
	if off.Keepalive.Enabled || off.Verdict != "at-risk" || off.Remote != l.link.A4+":8080" || off.Family != "inet" {
		t.Errorf("curl --no-keepalive: %+v", off)
	}
	if ss := ssTimer(t, l.client, on.Inode); ss != "keepalive" || on.Timer != ss {
		t.Errorf("timer %q, ss %q", on.Timer, ss)
	}
	if ss := ssTimer(t, l.client, off.Inode); ss != "" || off.Timer != ss {
		t.Errorf("timer %q, ss %q", off.Timer, ss)
	}
}

func TestSocketsJava(t *testing.T) {
	l := newSockLab(t, 83)
	testenv.Need(t, "java")
	pid, socks := startReady(t, l.client.Command("java", "testdata/KeepaliveClient.java", l.link.A4, "8080"))
	stdout, stderr, code := runKadiag(t, "sockets", "--pid", strconv.Itoa(pid), "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	r := decodeSockets(t, stdout)
	byPort := map[string]inspect.Socket{}
	for _, sk := range r.Processes[0].Sockets {
		byPort[sk.Local] = sk
	}
	if len(byPort) != 2 {
		t.Fatalf("JVM sockets %+v", r.Processes[0].Sockets)
	}
	for _, c := range socks {
		// The JDK opens AF_INET6 sockets and reaches IPv4 through mapped addresses.
		sk, ok := byPort[fmt.Sprintf("%s:%d", l.link.B4, c.LocalPort)]
		if !ok || sk.Family != "inet6" {
			t.Errorf("java port %d: %+v", c.LocalPort, sk)
			continue
		}
		check(t, "java port "+strconv.Itoa(c.LocalPort), sk, c, inspect.Exact)
		if ss := ssTimer(t, l.client, sk.Inode); ss != sk.Timer {
			t.Errorf("timer %q, ss %q", sk.Timer, ss)
		}
	}
	if r.Summary.OK != 1 || r.Summary.AtRisk != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
}

// nobodyKadiag copies the binary where the unprivileged user can run it.
func nobodyKadiag(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kadiag-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.Open(buildKadiag(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "kadiag")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return bin
}

// TestSocketsUnprivileged runs kadiag as nobody against a process of
// nobody's. Same user: the kernel lets it duplicate the sockets, exact
// values. With a different real uid (ptrace-attach denied, as under Yama
// ptrace_scope=1, while /proc stays readable): values inferred from timers,
// a note on stderr, and still the right exit code.
func TestSocketsUnprivileged(t *testing.T) {
	l := newSockLab(t, 84)
	testenv.Need(t, "setpriv")
	bin := nobodyKadiag(t)
	asNobody := []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}
	pid, socks := startReady(t, l.client.Command(asNobody[0], append(asNobody[1:], python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")...))
	args := []string{"sockets", "--pid", strconv.Itoa(pid), "-o", "json"}

	stdout, stderr, code := runAs(t, l.client.Command(asNobody[0], append(append(asNobody[1:], bin), args...)...))
	if code != 1 || stderr != "" {
		t.Fatalf("nobody, same user: exit %d, stderr %q", code, stderr)
	}
	r := decodeSockets(t, stdout)
	for i, sk := range r.Processes[0].Sockets {
		check(t, "nobody", sk, socks[i], inspect.Exact)
	}

	// --all as nobody: its own process with exact values, the rest skipped with a note.
	stdout, stderr, code = runAs(t, l.client.Command(asNobody[0], append(asNobody[1:], bin, "sockets", "--all", "-o", "json")...))
	r = decodeSockets(t, stdout)
	var mine bool
	for _, p := range r.Processes {
		if p.PID == pid {
			mine = len(p.Sockets) == 2 && p.Sockets[0].Keepalive.Source == inspect.Exact
		}
	}
	if code != 1 || !mine || !strings.Contains(stderr, "kadiag: note:") {
		t.Errorf("--all as nobody: exit %d, own process found %v, stderr %q", code, mine, stderr)
	}

	denied := []string{"setpriv", "--ruid=daemon", "--euid=nobody", "--rgid=nogroup", "--egid=nogroup", "--clear-groups", bin}
	stdout, stderr, code = runAs(t, l.client.Command(denied[0], append(denied[1:], args...)...))
	if code != 1 {
		t.Fatalf("ptrace denied: exit %d, stderr %q", code, stderr)
	}
	if n := strings.Count(stderr, "\n"); n != 1 || !strings.Contains(stderr, "inferred from kernel timers") || !strings.Contains(stderr, "sudo") {
		t.Errorf("want one note on how to get exact values, got %q", stderr)
	}
	r = decodeSockets(t, stdout)
	off, on := r.Processes[0].Sockets[0], r.Processes[0].Sockets[1]
	if off.Keepalive.Source != inspect.Inferred || off.Keepalive.Enabled || off.Verdict != "at-risk" {
		t.Errorf("inferred off: %+v", off)
	}
	// Idle estimated from the timer: 25 s, to the second, and only a lower
	// bound: below max idle it proves nothing, so unknown, not ok.
	if k := on.Keepalive; k.Source != inspect.Inferred || !k.Enabled || !k.IdleLowerBound || k.IdleS < 24 || k.IdleS > 26 || on.Verdict != "unknown" {
		t.Errorf("inferred on: %+v", on)
	}
	// Nothing at risk: exit 0 on inferred values too (curl as nobody,
	// keepalive 17 s: unknown, which fails only under --strict).
	testenv.Need(t, "curl")
	curl := l.client.Command(asNobody[0], append(asNobody[1:], "curl", "-sS", "-m", "60", "--keepalive-time", "17", "http://"+l.link.A4+":8080/")...)
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { curl.Process.Kill(); curl.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		stdout, stderr, code = runAs(t, l.client.Command(denied[0], append(denied[1:], "sockets", "--pid", strconv.Itoa(curl.Process.Pid), "-o", "json")...))
		// Until nsenter and setpriv have exec'd curl, the pid is root's: exit 2.
		if code != 2 {
			r = decodeSockets(t, stdout)
			if len(r.Processes) == 1 && len(r.Processes[0].Sockets) == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl as nobody did not connect: exit %d %q %+v", code, stderr, r)
		}
	}
	if k := r.Processes[0].Sockets[0].Keepalive; code != 0 || k.Source != inspect.Inferred || k.IdleS < 16 || k.IdleS > 18 {
		t.Errorf("inferred curl: exit %d, %+v", code, k)
	}

	// Another user's process: one line, exit 2.
	_, stderr, code = runAs(t, l.client.Command(denied[0], append(denied[1:], "sockets", "--pid", strconv.Itoa(l.serverPID))...))
	if code != 2 || !strings.Contains(stderr, "permission denied") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("root's process as nobody: exit %d, stderr %q", code, stderr)
	}
	// Outside the target's namespace an unprivileged user cannot enter it.
	_, stderr, code = runAs(t, exec.Command(asNobody[0], append(append(asNobody[1:], bin), args...)...))
	if code != 2 || !strings.Contains(stderr, "permission denied") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("other netns as nobody: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runAs(t, exec.Command(asNobody[0], append(asNobody[1:], bin, "sockets", "--netns", l.client.Path)...))
	if code != 2 || !strings.Contains(stderr, "permission denied") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("--netns as nobody: exit %d, stderr %q", code, stderr)
	}
}

func TestSocketsAllAndNetns(t *testing.T) {
	l := newSockLab(t, 85)
	pid, _ := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))
	stdout, stderr, code := runKadiag(t, "sockets", "--all", "-o", "json")
	if code == 2 {
		t.Fatalf("--all: %s", stderr)
	}
	r := decodeSockets(t, stdout)
	var seen int
	for _, p := range r.Processes {
		switch p.PID {
		case pid:
			seen++
			if len(p.Sockets) != 2 || !p.Sockets[0].Keepalive.Source.IsExact() {
				t.Errorf("client in --all: %+v", p)
			}
		case l.serverPID:
			seen++
			if len(p.Sockets) != 3 {
				t.Errorf("server in --all: %+v", p)
			}
		}
	}
	if seen != 2 || code != 1 {
		t.Errorf("--all: saw %d of 2 test processes, exit %d", seen, code)
	}

	stdout, stderr, code = runKadiag(t, "sockets", "--netns", l.client.Path, "-o", "json")
	if code != 1 || !strings.Contains(stderr, "--netns maps no processes") {
		t.Fatalf("--netns: exit %d, stderr %q", code, stderr)
	}
	r = decodeSockets(t, stdout)
	if len(r.Processes) != 1 || r.Processes[0].PID != 0 || len(r.Processes[0].Sockets) != 2 || r.Summary.AtRisk != 1 || r.Summary.Unknown != 1 {
		t.Errorf("--netns: %+v", r)
	}
}

func TestSocketsErrors(t *testing.T) {
	testenv.Privileged(t)
	tests := []struct {
		args     []string
		contains string
	}{
		{[]string{"sockets"}, "give exactly one of --pid, --all or --netns"},
		{[]string{"sockets", "--pid", "1", "--all"}, "give exactly one of"},
		{[]string{"sockets", "--pid", "abc"}, "invalid argument"},
		{[]string{"sockets", "--pid", "4194304"}, "pid 4194304: no such process"},
		{[]string{"sockets", "--pid", "-3"}, "no such process"},
		{[]string{"sockets", "--pid", "1", "--max-idle", "soon"}, "--max-idle: bad duration"},
		{[]string{"sockets", "--pid", "1", "--max-idle", "0"}, "must be positive"},
		{[]string{"sockets", "--netns", "/nonexistent"}, "cannot use network namespace /nonexistent"},
		{[]string{"sockets", "--netns", "/proc/self/ns/uts"}, "not a network namespace"},
		{[]string{"sockets", "--pid", "1", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		stdout, stderr, code := runKadiag(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.contains) || strings.Count(stderr, "\n") != 1 || stdout != "" {
			t.Errorf("kadiag %v: exit %d, stdout %q, stderr %q (want exit 2 and %q)", tt.args, code, stdout, stderr, tt.contains)
		}
	}
	// A process without TCP sockets passes.
	stdout, _, code := runKadiag(t, "sockets", "--pid", strconv.Itoa(os.Getpid()))
	if code != 0 || !strings.Contains(stdout, "0 sockets") {
		t.Errorf("own test process: exit %d\n%s", code, stdout)
	}
}

// TestSocketsStrict: a socket whose keepalive probes go unanswered cannot be
// judged from timers alone (--netns infers); it is unknown, which fails the
// check only with --strict.
func TestSocketsStrict(t *testing.T) {
	l := newSockLab(t, 86)
	testenv.Need(t, "nft")
	_, _ = startReady(t, l.client.Command(python3(t), "-c", `
import socket, sys
s = socket.create_connection((sys.argv[1], 8080))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 50)
print("ready", flush=True)
sys.stdin.read()`, l.link.A4))
	for _, args := range [][]string{
		{"add", "table", "inet", "kadiagtest"},
		{"add", "chain", "inet", "kadiagtest", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "kadiagtest", "in", "tcp", "sport", "8080", "drop"},
	} {
		if out, err := l.client.Command("nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		stdout, stderr, code := runKadiag(t, "sockets", "--netns", l.client.Path, "-o", "json")
		r := decodeSockets(t, stdout)
		if r.Summary.Unknown == 1 && r.Summary.Sockets == 1 {
			if code != 0 {
				t.Errorf("unknown without --strict: exit %d, stderr %q", code, stderr)
			}
			if _, _, code := runKadiag(t, "sockets", "--netns", l.client.Path, "--strict"); code != 1 {
				t.Errorf("unknown with --strict: exit %d, want 1", code)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no probing socket after 10s: %+v", r)
		}
	}
}
