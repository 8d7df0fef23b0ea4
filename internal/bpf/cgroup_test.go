package bpf_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/bpf/bpftest"
	"github.com/kadiag/kadiag/internal/testenv"
)

type step struct {
	Step        string `json:"step"`
	Keepalive   int    `json:"keepalive"`
	Idle        int    `json:"idle"`
	Intvl       int    `json:"intvl"`
	Cnt         int    `json:"cnt"`
	UserTimeout int    `json:"user_timeout"`
}

// runClient runs testdata/client.py inside cgroup dir against a listener of
// the test (outside the cgroup) and returns its report by step.
func runClient(t *testing.T, dir string) map[string]step {
	t.Helper()
	testenv.Need(t, "python3")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command("python3", "testdata/client.py", "127.0.0.1", port)
	bpftest.Into(t, cmd, dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]step{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("client said %q: %v", sc.Text(), err)
		}
		steps[s.Step] = s
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v", err)
	}
	return steps
}

var settings = bpf.Settings{Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4, UserTimeout: 30 * time.Second}

func TestCgroupPolicyEnforces(t *testing.T) {
	dir := bpftest.Cgroup(t)
	sub := bpftest.Sub(t, dir, "child") // descendants are covered
	before := runClient(t, sub)
	if before["connect"].Keepalive != 0 {
		t.Fatalf("without the policy the client's keepalive is on: %+v", before["connect"])
	}
	p, err := bpf.Attach(dir, settings, false)
	if err != nil {
		t.Fatal(err)
	}
	steps := runClient(t, sub)
	want := map[string]step{
		"connect":       {Keepalive: 1, Idle: 60, Intvl: 15, Cnt: 4, UserTimeout: 30000},
		"keepalive-off": {Keepalive: 1, Idle: 60, Intvl: 15, Cnt: 4, UserTimeout: 30000},
		"idle-3600":     {Keepalive: 1, Idle: 60, Intvl: 15, Cnt: 4, UserTimeout: 30000},
		"idle-10":       {Keepalive: 1, Idle: 10, Intvl: 15, Cnt: 4, UserTimeout: 30000},
		"listen":        {Keepalive: 1, Idle: 60, Intvl: 15, Cnt: 4, UserTimeout: 30000},
		"accepted":      {Keepalive: 1, Idle: 60, Intvl: 15, Cnt: 4, UserTimeout: 30000},
	}
	for name, w := range want {
		got := steps[name]
		w.Step = name
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
	}
	if steps["udp"].Keepalive != 0 {
		t.Errorf("the policy rewrote a UDP socket's SO_KEEPALIVE: %+v", steps["udp"])
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	after := runClient(t, sub)
	if after["connect"] != before["connect"] {
		t.Errorf("after Close: %+v, want the untouched %+v", after["connect"], before["connect"])
	}
}

func TestPinnedPolicyReplaceListDetach(t *testing.T) {
	dir := bpftest.Cgroup(t)
	p, err := bpf.Attach(dir, settings, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bpf.Detach(dir) }) // even when the test fails half way
	p.Close()                             // pinned: stays attached
	if got := runClient(t, dir)["connect"]; got.Idle != 60 {
		t.Fatalf("pinned policy not in force after Close: %+v", got)
	}
	s2 := settings
	s2.Idle = 30 * time.Second
	p2, err := bpf.Attach(dir, s2, true)
	if err != nil {
		t.Fatal(err)
	}
	p2.Close()
	if !p2.Replaced {
		t.Error("second Attach did not say it replaced the first")
	}
	// Replaced, not stacked: a stacked older program would run after ours
	// and its own value would win.
	if got := runClient(t, dir)["connect"]; got.Idle != 30 || got.Keepalive != 1 {
		t.Fatalf("after replace: %+v, want idle 30", got)
	}
	list, err := bpf.List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range list {
		if q.Cgroup == dir {
			found = true
			if q.Settings != s2 {
				t.Errorf("List: settings %+v, want %+v", q.Settings, s2)
			}
		}
	}
	if !found {
		t.Fatalf("List does not show %s: %+v", dir, list)
	}
	if _, err := bpf.Detach(dir); err != nil {
		t.Fatal(err)
	}
	if got := runClient(t, dir)["connect"]; got.Keepalive != 0 || got.Idle == 30 {
		t.Fatalf("after Detach new sockets are still touched: %+v", got)
	}
	if _, err := bpf.Detach(dir); !errors.Is(err, bpf.ErrNotAttached) {
		t.Fatalf("second Detach: %v, want ErrNotAttached", err)
	}
}
