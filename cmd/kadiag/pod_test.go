package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
)

// `sockets --pod` selects exactly the pod's processes (real processes in
// real cgroups named as kubelet names them, the pod named by a real log
// tree), `--container` one container's; table and JSON name
// namespace/pod/container; doctor and capture take the same selection;
// a pod that is not on this node is a one-line error.
func TestPodSelection(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "nsenter", "python3")
	const (
		uid = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
		app = "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5"
		sc  = "f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6"
	)
	server, client := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, server, client, 84)
	startLines(t, server.Command("python3", "testdata/hold_server.py", "8080"))
	a := startLines(t, client.Command("python3", "testdata/conn_client.py", link.A4, "8080"))
	b := startLines(t, client.Command("python3", "testdata/conn_client.py", link.A4, "8080"))
	other := startLines(t, client.Command("python3", "testdata/conn_client.py", link.A4, "8080"))
	a.do(t, "open off 2")
	b.do(t, "open short 1")
	other.do(t, "open off 1")
	for pid, id := range map[int]string{a.pid: app, b.pid: sc} {
		if !testenv.MoveToFakePod(t, pid, uid, id) {
			testenv.SkipOrFail(t, "no writable cgroup hierarchy")
		}
	}
	root := testenv.KubeletLogs(t, "shop", "web-0", uid, map[string]string{"app": app, "sidecar": sc})

	scan := func(args ...string) *inspect.Report {
		t.Helper()
		stdout, stderr, code := runKadiag(t, append([]string{"sockets", "--log-root", root, "-o", "json"}, args...)...)
		if code != 0 && code != 1 {
			t.Fatalf("sockets %v: exit %d: %s", args, code, stderr)
		}
		var r inspect.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	r := scan("--pod", "shop/web-0")
	var pids []int
	for _, p := range r.Processes {
		pids = append(pids, p.PID)
		want := map[int]string{a.pid: "app", b.pid: "sidecar"}[p.PID]
		if p.Pod == nil || p.Pod.Namespace != "shop" || p.Pod.Pod != "web-0" || p.Pod.Container != want || p.Pod.PodUID != uid {
			t.Errorf("pid %d: pod %+v, want shop/web-0/%s", p.PID, p.Pod, want)
		}
	}
	slices.Sort(pids)
	if !slices.Equal(pids, []int{min(a.pid, b.pid), max(a.pid, b.pid)}) {
		t.Fatalf("--pod shop/web-0 selected %v, want %d and %d", pids, a.pid, b.pid)
	}
	if r.Summary.AtRisk != 2 || r.Summary.OK != 1 {
		t.Errorf("summary %+v, want 2 at risk (app's keepalive off) and 1 ok (sidecar)", r.Summary)
	}
	r = scan("--pod", "shop/web-0", "--container", "sidecar")
	if len(r.Processes) != 1 || r.Processes[0].PID != b.pid {
		t.Fatalf("--container sidecar selected %+v", r.Processes)
	}
	// --pid of a pod's process is named too; a host process is not.
	r = scan("--pid", fmt.Sprint(a.pid), "--pid", fmt.Sprint(other.pid))
	if r.Processes[0].Pod == nil || r.Processes[0].Pod.Container != "app" || r.Processes[1].Pod != nil {
		t.Errorf("--pid: pods %+v and %+v", r.Processes[0].Pod, r.Processes[1].Pod)
	}
	stdout, _, _ := runKadiag(t, "sockets", "--log-root", root, "--pod", "shop/web-0", "--container", "app")
	if !strings.HasPrefix(stdout, "POD ") || !strings.Contains(stdout, "shop/web-0/app ") {
		t.Errorf("table without the pod:\n%s", stdout)
	}
	stdout, stderr, code := runKadiag(t, "doctor", "--log-root", root, "--pod", "shop/web-0", "--container", "sidecar", "-o", "json")
	var d struct {
		PID       int
		Container struct{ Namespace, Pod, Name string }
	}
	if err := json.Unmarshal([]byte(stdout), &d); err != nil || d.PID != b.pid || d.Container.Name != "sidecar" || d.Container.Pod != "web-0" {
		t.Errorf("doctor --pod: exit %d, %+v %v\n%s", code, d, err, stderr)
	}
	stdout, stderr, code = runKadiag(t, "fix", "--log-root", root, "--pod", "shop/web-0", "--container", "sidecar", "--dry-run", "-o", "json")
	var fx struct {
		Process struct{ PID int }
		DryRun  bool `json:"dry_run"`
	}
	if err := json.Unmarshal([]byte(stdout), &fx); err != nil || fx.Process.PID != b.pid || !fx.DryRun {
		t.Errorf("fix --pod --dry-run: exit %d, %+v %v\n%s", code, fx, err, stderr)
	}
	stdout, stderr, code = runKadiag(t, "capture", "--log-root", root, "--pod", "shop/web-0", "--container", "app", "--duration", "1s", "-o", "json")
	if code != 0 && code != 1 || !strings.Contains(stdout, `"flows"`) {
		t.Errorf("capture --pod: exit %d\n%s\n%s", code, stdout, stderr)
	}

	for _, tt := range []struct {
		args     []string
		contains string
	}{
		{[]string{"sockets", "--pod", "shop/web-1"}, "pod not found on this node: shop/web-1 has no logs under " + root + "/pods"},
		{[]string{"sockets", "--pod", "shop/web-0", "--container", "db"}, `no such container in the pod: shop/web-0 has no container "db" (it has: app, sidecar)`},
		{[]string{"sockets", "--pod", "web-0"}, "give the pod as NAMESPACE/NAME"},
		{[]string{"sockets", "--container", "app", "--all"}, "--container selects a container of --pod"},
		{[]string{"doctor", "--pod", "other/x"}, "pod not found on this node"},
		{[]string{"doctor", "--pod", "shop/web-0", "--pid", "1"}, "give --pid or --pod, not both"},
		{[]string{"capture", "--pod", "shop/web-1"}, "pod not found on this node"},
		{[]string{"fix", "--pod", "shop/web-1"}, "pod not found on this node"},
		{[]string{"fix", "--pod", "shop/web-0", "--pid", "1"}, "give --pid or --pod, not both"},
		{[]string{"fix", "--container", "app", "--list"}, "--container selects a container of --pod"},
	} {
		_, stderr, code := runKadiag(t, append(tt.args, "--log-root", root)...)
		if code != 2 || !strings.Contains(stderr, tt.contains) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("kadiag %v: exit %d, stderr %q; want exit 2, one line with %q", tt.args, code, stderr, tt.contains)
		}
	}
}

// `sockets --max-idle auto --conntrack-netns NAT` on a client behind a real
// NAT namespace (established timeout 5 s): while tracked, the flow shows
// its conntrack entry and is judged against the NAT's 3 s, naming it;
// once the NAT forgot it, the socket, still ESTABLISHED, is dead, exit 1,
// "conntrack": null. Bad values are one-line errors.
func TestSocketsMaxIdleAuto(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "nsenter", "python3", "ss")
	buildKadiag(t) // before the flow starts: its timeout runs from the last packet
	lab := testenv.NewNATLab(t, 5*time.Second, 101)
	startLines(t, lab.Server.Command("python3", "testdata/hold_server.py", "8080"))
	c := startLines(t, lab.Client.Command("python3", "testdata/conn_client.py", lab.ServerIP, "8080"))
	c.do(t, "open off 1")
	socket := func() (inspect.Socket, int, string) {
		t.Helper()
		stdout, stderr, code := runKadiag(t, "sockets", "--pid", fmt.Sprint(c.pid), "--max-idle", "auto", "--conntrack-netns", lab.NAT.Path, "-o", "json")
		var r inspect.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 1 {
			t.Fatalf("sockets: exit %d %v\n%s\n%s", code, err, stdout, stderr)
		}
		if r.MaxIdleS != 5 {
			t.Errorf("max_idle_s %d, want the NAT's 5", r.MaxIdleS)
		}
		return r.Processes[0].Sockets[0], code, stdout
	}
	sk, code, out := socket()
	if sk.Conntrack == nil || sk.Conntrack.Netns != lab.NAT.Path || sk.Conntrack.RemainingS > 5 || code != 1 ||
		sk.Reason != "keepalive off; conntrack at "+lab.NAT.Path+" forgets after 5s" {
		t.Fatalf("tracked flow: exit %d %+v\n%s", code, sk, out)
	}
	table, _, _ := runKadiag(t, "sockets", "--pid", fmt.Sprint(c.pid), "--max-idle", "auto", "--conntrack-netns", lab.NAT.Path)
	if !strings.Contains(table, "CONNTRACK") || !strings.Contains(table, "forgotten in ") {
		t.Errorf("table:\n%s", table)
	}
	time.Sleep(7 * time.Second)
	sk, code, out = socket()
	if sk.Verdict != inspect.Dead || sk.Conntrack != nil || code != 1 || !strings.Contains(out, `"conntrack":null`) {
		t.Fatalf("forgotten flow: exit %d %+v\n%s", code, sk, out)
	}
	port := sk.Local[strings.LastIndexByte(sk.Local, ':')+1:]
	ss, err := lab.Client.Command("ss", "-Htn", "state", "established", "sport", "= :"+port).Output()
	if err != nil || strings.TrimSpace(string(ss)) == "" {
		t.Fatalf("ss does not show the dead socket ESTABLISHED: %v %q", err, ss)
	}
	dout, derr, dcode := runKadiag(t, "doctor", "--pid", fmt.Sprint(c.pid), "--max-idle", "auto", "--conntrack-netns", lab.NAT.Path, "-o", "json")
	var d struct {
		Sockets  []inspect.Socket
		Problems []string
	}
	if err := json.Unmarshal([]byte(dout), &d); err != nil || dcode != 1 || len(d.Sockets) != 1 || d.Sockets[0].Verdict != inspect.Dead ||
		len(d.Problems) == 0 || !strings.Contains(d.Problems[0], "1 of 1 connected sockets are dead") {
		t.Errorf("doctor on the dead socket: exit %d %v %+v\n%s", dcode, err, d, derr)
	}

	for _, tt := range []struct {
		args     []string
		contains string
	}{
		{[]string{"sockets", "--all", "--max-idle", "auto,soon"}, `--max-idle: bad --max-idle "auto,soon": after auto, bad duration "soon"`},
		{[]string{"sockets", "--all", "--conntrack-netns", "/nonexistent"}, "--conntrack-netns /nonexistent: cannot read network namespace"},
		{[]string{"sockets", "--all", "--conntrack-netns", "/etc/hostname"}, "not a namespace file"},
		{[]string{"exporter", "--listen", "127.0.0.1:0", "--conntrack-netns", "/nonexistent"}, "--conntrack-netns /nonexistent: cannot read network namespace"},
		{[]string{"doctor", "--pid", "1", "--max-idle", "auto,"}, "--max-idle: bad --max-idle"},
	} {
		_, stderr, code := runKadiag(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.contains) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("kadiag %v: exit %d, stderr %q; want exit 2, one line with %q", tt.args, code, stderr, tt.contains)
		}
	}
}
