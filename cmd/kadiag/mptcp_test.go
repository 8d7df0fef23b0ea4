package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// TestGoServerMPTCP: a Go server's listener is an MPTCP socket. As root,
// kadiag reads its options exactly, marks it mptcp, shows TCP_USER_TIMEOUT
// as not supported, and neither sockets nor doctor speak of a missing
// privilege or tell root to run as root (issue 12 items 1 and 12).
func TestGoServerMPTCP(t *testing.T) {
	testenv.Privileged(t)
	bin := filepath.Join(t.TempDir(), "goserver")
	if b, err := exec.Command("go", "build", "-o", bin, "./testdata/goserver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	pid, _ := startReady(t, exec.Command(bin, "127.0.0.1:0"))
	p := strconv.Itoa(pid)
	stdout, stderr, code := runKadiag(t, "sockets", "--pid", p, "-o", "json")
	r := decodeSockets(t, stdout)
	if code != 0 || len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 1 {
		t.Fatalf("sockets: exit %d, stderr %q, %+v", code, stderr, r)
	}
	lis := r.Processes[0].Sockets[0]
	if lis.State != "LISTEN" || lis.Protocol != "mptcp" || !lis.Keepalive.Source.IsExact() || !lis.Keepalive.UserTimeoutUnsupported || lis.Keepalive.IdleS == 0 {
		t.Errorf("Go listener: %+v; want an MPTCP listener read exactly (Go turns keepalive on per accepted connection), user timeout not supported", lis)
	}
	table, _, _ := runKadiag(t, "sockets", "--pid", p)
	if !strings.Contains(table, "not supported") || !strings.Contains(table, "off (mptcp)") {
		t.Errorf("sockets table:\n%s", table)
	}
	_, docText, _ := doctorRun(t, pid)
	for name, out := range map[string]string{"sockets": table + stderr, "doctor": docText} {
		for _, bad := range []string{"run as root", "without privilege", "cannot be inferred"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s as root says %q:\n%s", name, bad, out)
			}
		}
	}
}
