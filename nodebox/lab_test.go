package nodebox

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// start runs a Python program in ns and waits for its "ready" line; the
// reader holds what it prints next.
func start(t *testing.T, ns *testenv.Netns, prog string, args ...string) (int, *bufio.Reader) {
	t.Helper()
	cmd := ns.Command("python3", append([]string{"-c", prog}, args...)...)
	out, _ := cmd.StdoutPipe()
	in, _ := cmd.StdinPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	if l, _ := r.ReadString('\n'); l != "ready\n" {
		t.Fatalf("%s: %q", prog, l)
	}
	return cmd.Process.Pid, r
}

const (
	holdServer = `import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 8080))
s.listen(16)
print("ready", flush=True)
held = []
while True:
    held.append(s.accept()[0])
`
	// holdClient connects with keepalive off and prints its local port.
	holdClient = `import socket, sys
c = socket.create_connection((sys.argv[1], 8080))
print("ready", flush=True)
print(c.getsockname()[1], flush=True)
sys.stdin.read()
`
)

// conntrackOracle is conntrack -L in the NAT namespace: the remaining
// seconds of the entry whose original source port is sport, or -1.
func conntrackOracle(t *testing.T, ns *testenv.Netns, sport int) int {
	t.Helper()
	out, err := ns.Command("conntrack", "-L", "-p", "tcp").CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`^tcp\s+6\s+(\d+)\s+\S+\s+src=\S+\s+dst=\S+\s+sport=` + strconv.Itoa(sport) + `\s`)
	for _, l := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}

// ssEstablished is ss in the client namespace: whether the socket with
// local port sport is ESTABLISHED.
func ssEstablished(t *testing.T, ns *testenv.Netns, sport int) bool {
	t.Helper()
	out, err := ns.Command("ss", "-Htn", "state", "established", "sport", "= :"+strconv.Itoa(sport)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out)) != ""
}
