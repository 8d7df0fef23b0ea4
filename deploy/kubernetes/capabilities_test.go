package kubernetes

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// holder is a Python program that, as another user, holds a connection
// over loopback with keepalive tuned: a listener, its accepted socket and
// the client socket, three TCP sockets in all.
const holder = `
import socket, sys
l = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(l.getsockname())
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
a, _ = l.accept()
print("ready", flush=True)
sys.stdin.read()
`

// TestCapabilities runs the real exporter as uid 0 with exactly the
// DaemonSet's capabilities, the way a container gets them, against a
// process of another user in another network namespace: it reads all of
// its sockets exactly. With any one of the capabilities removed it cannot,
// which is why each is in the manifest.
func TestCapabilities(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv", "nsenter", "python3")
	m := load(t)
	var caps []string
	for _, c := range m.ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		caps = append(caps, strings.ToLower(string(c)))
	}
	bin := filepath.Join(t.TempDir(), "kadiag")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kadiag").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := testenv.NewNetns(t)
	py, err := exec.LookPath("python3")
	if _, serr := os.Stat("/usr/bin/python3"); serr == nil {
		py, err = "/usr/bin/python3", nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// nsenter and setpriv exec, so the pid is Python's.
	cmd := exec.Command("nsenter", "--net="+ns.Path, "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", holder)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "ready\n" {
		t.Fatalf("holder: %q", l)
	}
	pid := cmd.Process.Pid

	exact := func(caps []string) (int, string) {
		t.Helper()
		bounding := "-all"
		for _, c := range caps {
			bounding += ",+" + c
		}
		// As uid 0, exec grants every capability left in the bounding set:
		// the container's situation with drop ALL + add.
		e := exec.Command("setpriv", "--bounding-set="+bounding, "--inh-caps=-all", "--",
			bin, "exporter", "--listen=127.0.0.1:0", "--interval=1s", "--per-process")
		errPipe, _ := e.StderrPipe()
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { e.Process.Kill(); e.Wait() }()
		var (
			mu  sync.Mutex
			buf strings.Builder
		)
		logText := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(errPipe)
			for sc.Scan() {
				mu.Lock()
				buf.WriteString(sc.Text() + "\n")
				mu.Unlock()
				if _, a, ok := strings.Cut(sc.Text(), " addr="); ok {
					addr <- strings.Fields(a)[0]
				}
			}
		}()
		var base string
		select {
		case base = <-addr:
		case <-time.After(20 * time.Second):
			t.Fatalf("exporter with %v did not start", caps)
		}
		// Exact: read by the BPF iterators (SYS_ADMIN stands in for
		// CAP_BPF + CAP_PERFMON) or with pidfd_getfd + getsockopt.
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^kadiag_tcp_sockets\{[^}]*keepalive_source="(?:bpf|getsockopt)"[^}]*pid="%d"[^}]*\} (\d+)$`, pid))
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get("http://" + base + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(b), "kadiag_scans_total 2") {
					// Two scans done: the snapshot is complete.
					n := 0
					for _, m := range re.FindAllStringSubmatch(string(b), -1) {
						v, _ := strconv.Atoi(m[1])
						n += v
					}
					return n, logText()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("exporter with %v finished no scans:\n%s", caps, logText())
		return 0, ""
	}

	if n, log := exact(caps); n != 3 {
		t.Fatalf("with %v: %d sockets read exactly, want 3\n%s", caps, n, log)
	}
	for i, c := range caps {
		fewer := append(append([]string{}, caps[:i]...), caps[i+1:]...)
		n, log := exact(fewer)
		t.Logf("without %s: %d of 3 sockets read exactly; log:\n%s", c, n, log)
		if n == 3 {
			t.Errorf("without %s the exporter still reads the process exactly: the capability is not needed", c)
		}
	}
}
