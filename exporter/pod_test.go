package exporter

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/nodebox"
)

// holdServer accepts and holds connections; holdClient opens connections
// of the kinds in its arguments: "off" (keepalive off), "probe" (keepalive
// on, a probe every second), "long" (keepalive on, first probe after 600 s).
const (
	holdServer = `import socket, sys, threading
s = socket.socket(socket.AF_INET6)
s.bind(("::", int(sys.argv[1])))
s.listen(128)
print("ready", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
`
	holdClient = `import socket, sys
held = []
for kind in sys.argv[2:]:
    s = socket.create_connection((sys.argv[1], 8080))
    if kind in ("probe", "long"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = 1 if kind == "probe" else 600
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
`
)

// startPy runs a Python program (in a namespace when ns is set) and waits
// for its "ready" line.
func startPy(t *testing.T, ns *testenv.Netns, prog string, args ...string) int {
	t.Helper()
	argv := append([]string{"python3", "-c", prog}, args...)
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(argv[0], argv[1:]...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	out, _ := cmd.StdoutPipe()
	stdin, _ := cmd.StdinPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "ready\n" {
		t.Fatalf("%v: %q", argv, l)
	}
	return cmd.Process.Pid
}

// series gathers e's metrics: name → label set ("k=v,...") → value.
func series(t *testing.T, e *Exporter) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, s := range mf.GetMetric() {
			var l []string
			for _, lp := range s.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			m[strings.Join(l, ",")] = value(s)
		}
		out[mf.GetName()] = m
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// netstatKeepalive is the oracle for the probe counter: the kernel's own
// /proc/net/netstat read by cat inside the namespace.
func netstatKeepalive(t *testing.T, ns *testenv.Netns) float64 {
	t.Helper()
	out, err := ns.Command("cat", "/proc/net/netstat").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == "TCPKeepAlive" && names[0] == "TcpExt:" {
				v, _ := strconv.ParseFloat(vals[j], 64)
				return v
			}
		}
	}
	t.Fatalf("no TcpExt TCPKeepAlive in\n%s", out)
	return 0
}

// Two processes of one container (real processes in real cgroups named as
// kubelet names them, the pod named by a real log tree) are one series
// set labelled namespace/pod/container, with their counts summed; a host
// process is labelled by comm; --per-process splits them by pid. The
// client namespace's keepalive probe counter follows the kernel's, and a
// keepalive-off connection idle past the timeout is counted as such.
func TestPerContainerSeries(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3", "nsenter", "cat")
	const (
		uid = "8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d"
		id  = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"
	)
	server, client := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, server, client, 83)
	startPy(t, server, holdServer, "8080")
	a := startPy(t, client, holdClient, link.A4, "off", "off", "probe")
	b := startPy(t, client, holdClient, link.A4, "off", "long")
	host := startPy(t, client, holdClient, link.A4, "off")
	for _, pid := range []int{a, b} {
		if !testenv.MoveToFakePod(t, pid, uid, id) {
			testenv.SkipOrFail(t, "no writable cgroup hierarchy")
		}
	}
	root := testenv.KubeletLogs(t, "shop", "cart-0", uid, map[string]string{"cart": id})
	// Everything idles past the 2 s timeout, and the probe connection
	// sends a probe a second.
	time.Sleep(3 * time.Second)

	e := New(Options{Interval: time.Hour, MaxIdle: 2 * time.Second, LogRoot: root})
	before := netstatKeepalive(t, client)
	if _, err := e.ScanOnce(); err != nil {
		t.Fatal(err)
	}
	after := netstatKeepalive(t, client)
	got := series(t, e)
	ctr := "comm=,container=cart,container_id=" + id + ",namespace=shop,pod=cart-0,pod_uid=" + uid
	for _, tt := range []struct {
		metric, labels string
		want           float64
	}{
		{"kadiag_tcp_processes", ctr, 2},
		{"kadiag_tcp_established_connections", ctr, 5},
		{"kadiag_tcp_at_risk_connections", ctr + ",reason=keepalive_off", 3},
		{"kadiag_tcp_at_risk_connections", ctr + ",reason=idle_too_long", 1},
		{"kadiag_tcp_idle_keepalive_off_connections", ctr, 3},
	} {
		if v, ok := got[tt.metric][tt.labels]; !ok || v != tt.want {
			t.Errorf("%s{%s} = %v (present %v), want %v\nall: %v", tt.metric, tt.labels, v, ok, tt.want, got[tt.metric])
		}
	}
	// Exact: through the BPF iterators where kadiag may load them, else getsockopt.
	src := func(s string) string {
		return "comm=,container=cart,container_id=" + id + ",keepalive_source=" + s + ",namespace=shop,pod=cart-0,pod_uid=" + uid
	}
	if v := got["kadiag_tcp_sockets"][src("bpf")] + got["kadiag_tcp_sockets"][src("getsockopt")]; v != 5 {
		t.Errorf("kadiag_tcp_sockets read exactly (bpf + getsockopt) = %v, want 5\nall: %v", v, got["kadiag_tcp_sockets"])
	}
	// The host client is summed with every other python3 on this host.
	if v := got["kadiag_tcp_processes"]["comm=python3,container=,container_id=,namespace=,pod=,pod_uid="]; v < 1 {
		t.Errorf("host python3 processes: %v", v)
	}
	var probes float64
	found := false
	for l, v := range got["kadiag_tcp_keepalive_probes_total"] {
		if strings.HasPrefix(l, "namespace=shop,") && strings.HasSuffix(l, ",pod=cart-0") {
			probes, found = v, true
		}
	}
	if !found || probes < before || probes > after || after < 1 {
		t.Errorf("keepalive probes of the pod's namespace: %v (present %v), kernel said %v before and %v after the scan", probes, found, before, after)
	}

	pp := New(Options{Interval: time.Hour, MaxIdle: 2 * time.Second, LogRoot: root, PerProcess: true})
	if _, err := pp.ScanOnce(); err != nil {
		t.Fatal(err)
	}
	got = series(t, pp)
	for pid, want := range map[int]float64{a: 3, b: 2, host: 1} {
		found := false
		for l, v := range got["kadiag_tcp_established_connections"] {
			if strings.Contains(l, ",pid="+strconv.Itoa(pid)+",") {
				found = true
				if v != want || (pid != host && !strings.Contains(l, "comm=python3,container=cart,")) {
					t.Errorf("pid %d: %s = %v, want %v", pid, l, v, want)
				}
			}
		}
		if !found {
			t.Errorf("--per-process: no series for pid %d", pid)
		}
	}
}

// Behind a real NAT namespace (established timeout 8 s: a node-wide scan
// on a loaded machine takes seconds) declared with
// --conntrack-netns and --max-idle auto, a keepalive-off connection the
// NAT has forgotten is counted dead (and idle past the timeout), while
// its socket stays ESTABLISHED.
func TestDeadConnectionsMetric(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3", "nsenter")
	lab := testenv.NewNATLab(t, 8*time.Second, 105)
	startPy(t, lab.Server, holdServer, "8080")
	pid := startPy(t, lab.Client, holdClient, lab.ServerIP, "off")
	connected := time.Now()
	e := New(Options{Interval: time.Hour, PerProcess: true, Middleboxes: &nodebox.Options{
		MaxIdle: nodebox.MaxIdle{Auto: true}, ConntrackNetns: []string{lab.NAT.Path}}})
	dead := func() (float64, float64) {
		t.Helper()
		if _, err := e.ScanOnce(); err != nil {
			t.Fatal(err)
		}
		got := series(t, e)
		var d, idle float64 = -1, -1
		for l, v := range got["kadiag_tcp_dead_connections"] {
			if strings.Contains(l, ",pid="+strconv.Itoa(pid)+",") {
				d = v
			}
		}
		for l, v := range got["kadiag_tcp_idle_keepalive_off_connections"] {
			if strings.Contains(l, ",pid="+strconv.Itoa(pid)+",") {
				idle = v
			}
		}
		return d, idle
	}
	d, idle := dead()
	if time.Since(connected) < 8*time.Second {
		if d != 0 || idle != 0 {
			t.Fatalf("fresh flow: dead %v, idle %v; want 0 and 0", d, idle)
		}
	} else {
		// The machine is so loaded that the scan outlasted the NAT's
		// timeout: the fresh state was never seen, only the forgotten one.
		t.Logf("the first scan ended %s after the connection: past the NAT's timeout", time.Since(connected))
	}
	time.Sleep(10 * time.Second)
	if d, idle := dead(); d != 1 || idle != 1 {
		t.Fatalf("forgotten flow: dead %v, idle %v; want 1 and 1", d, idle)
	}
}
