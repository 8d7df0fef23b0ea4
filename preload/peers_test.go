package preload

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// waitSocket polls the process's sockets from outside until one matches.
func waitSocket(t *testing.T, pid int, match func(Socket) bool) opts {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		socks, err := TCPSockets(pid)
		if err == nil {
			for _, s := range socks {
				if match(s) {
					return fromSocket(s)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: no matching socket after 30s (last: %v %+v)", pid, err, socks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdServer is an HTTP server whose replies wait until the test ends, like
// the slow backend behind a middlebox.
func holdServer(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprintln(w, "late reply")
	})}
	go srv.Serve(ln)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }); srv.Close() })
	return ln.Addr().String()
}

var peerEnv = []string{"KADIAG_KEEPIDLE=2", "KADIAG_KEEPINTVL=1", "KADIAG_KEEPCNT=3", "KADIAG_USER_TIMEOUT=4s"}

func TestPython(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3")
	so := lib(t, amd64Glibc)
	for _, a := range [][2]string{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(a[0], func(t *testing.T) {
			addr := listen(t, a[0], a[1])
			host, port := hostPort(t, addr)
			p := start(t, append([]string{"LD_PRELOAD=" + so}, peerEnv...), "python3", "testdata/client.py", host, port)
			in := parseOpts(t, p.line(t))
			out := outside(t, p.cmd.Process.Pid, remoteIs(addr))
			want := opts{1, 2, 1, 3, 4000}
			if in != want || out != want {
				t.Errorf("python3: inside %v, outside %v, want %v", in, out, want)
			}
		})
	}
}

// TestCurl: curl --no-keepalive leaves SO_KEEPALIVE off; with the library
// the connection carries the configured values while it waits for a reply.
func TestCurl(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "curl")
	so := lib(t, amd64Glibc)
	for _, a := range [][2]string{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(a[0], func(t *testing.T) {
			addr := holdServer(t, a[0], a[1])
			p := start(t, append([]string{"LD_PRELOAD=" + so}, peerEnv...), "curl", "-s", "--no-keepalive", "--max-time", "60", "http://"+addr+"/")
			defer p.cmd.Process.Kill()
			out := waitSocket(t, p.cmd.Process.Pid, remoteIs(addr))
			if want := (opts{1, 2, 1, 3, 4000}); out != want {
				t.Errorf("curl --no-keepalive: %v, want %v", out, want)
			}
		})
	}
}

var (
	javaOnce sync.Once
	javaDir  string
	javaErr  error
	javaOut  []byte
)

func javaClient(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "java", "javac")
	javaOnce.Do(func() {
		javaDir = filepath.Join(sharedTemp(t), "java")
		javaOut, javaErr = exec.Command("javac", "-d", javaDir, "testdata/KeepaliveClient.java").CombinedOutput()
	})
	if javaErr != nil {
		t.Fatalf("javac: %v\n%s", javaErr, javaOut)
	}
	return javaDir
}

// TestJava: JDK 17's HttpClient (AF_INET6 sockets, keepalive off) and a
// java.net.Socket on which the application calls setKeepAlive(false).
func TestJava(t *testing.T) {
	testenv.Privileged(t)
	cp := javaClient(t)
	so := lib(t, amd64Glibc)
	env := append([]string{"LD_PRELOAD=" + so}, peerEnv...)
	want := opts{1, 2, 1, 3, 4000}
	t.Run("HttpClient", func(t *testing.T) {
		addr := holdServer(t, "tcp4", "127.0.0.1:0")
		p := start(t, env, "java", "-cp", cp, "KeepaliveClient", "http", "http://"+addr+"/")
		defer p.cmd.Process.Kill()
		var family string
		out := waitSocket(t, p.cmd.Process.Pid, func(s Socket) bool { family = s.Family; return s.Remote == addr })
		if out != want || family != "inet6" {
			t.Errorf("HttpClient: %v on an %s socket, want %v on inet6", out, family, want)
		}
	})
	t.Run("setKeepAlive-false", func(t *testing.T) {
		addr := listen(t, "tcp6", "[::1]:0")
		host, port := hostPort(t, addr)
		p := start(t, env, "java", "-cp", cp, "KeepaliveClient", "socket", host, port)
		in := parseOpts(t, p.line(t))
		out := outside(t, p.cmd.Process.Pid, remoteIs(addr))
		if wantIn := (opts{1, 2, 1, 3, 0}); in != wantIn {
			t.Errorf("java.net.Socket inside: %v, want %v", in, wantIn)
		}
		if out != want {
			t.Errorf("java.net.Socket outside: %v, want %v", out, want)
		}
	})
}
