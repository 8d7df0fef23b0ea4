package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// expProc is a test program driven line by line over stdin.
type expProc struct {
	cmd   *exec.Cmd
	pid   int
	in    io.WriteCloser
	lines chan string
}

// startLines starts cmd and waits for its "ready" line; the test's end
// stops it.
func startLines(t *testing.T, cmd *exec.Cmd) *expProc {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cmd.StdinPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	p := &expProc{cmd: cmd, pid: cmd.Process.Pid, in: in, lines: make(chan string, 16)}
	t.Cleanup(p.stop)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	p.expect(t, "ready")
	return p
}

func (p *expProc) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok || l != want {
			t.Fatalf("%v: got %q (open %v), want %q", p.cmd.Args, l, ok, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%v: no %q after 30s", p.cmd.Args, want)
	}
}

// do sends commands ("open off 3") and waits for each to be done.
func (p *expProc) do(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		fmt.Fprintln(p.in, c)
		p.expect(t, "ok")
	}
}

func (p *expProc) stop() {
	p.in.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runningExporter is `kadiag exporter` started by a test.
type runningExporter struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

// startExporter runs the real binary on a free loopback port and returns
// once it has logged its address.
func startExporter(t *testing.T, args ...string) *runningExporter {
	t.Helper()
	cmd := exec.Command(buildKadiag(t), append([]string{"exporter", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &runningExporter{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-e.done
	})
	addr := make(chan string, 1)
	go func() {
		defer close(e.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			l := sc.Text()
			e.mu.Lock()
			e.log.WriteString(l + "\n")
			e.mu.Unlock()
			if i := strings.Index(l, " addr="); i >= 0 && strings.Contains(l, "listening") {
				addr <- strings.Fields(l[i+len(" addr="):])[0]
			}
		}
		cmd.Wait()
	}()
	select {
	case e.addr = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("exporter did not log its address:\n%s", e.logText())
	}
	return e
}

func (e *runningExporter) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

// startPrometheus runs Debian's prometheus on loopback, scraping target
// every second, and returns its base URL once it is ready.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	return startPrometheusJob(t, fmt.Sprintf(`    static_configs:
      - targets: [%q]
`, target))
}

// startPrometheusJob is startPrometheus with the kadiag job's settings
// (targets, scheme, TLS, auth) given as YAML.
func startPrometheusJob(t *testing.T, job string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kadiag
` + job
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var logs strings.Builder
	cmd := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	base := "http://" + listen
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promSample is one series of an instant query.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promQuery runs an instant query through Prometheus's HTTP API.
func promQuery(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s %s", q, err, r.Status, r.Error)
	}
	return r.Data.Result
}

// procCounts is what the test compares per process.
type procCounts struct {
	Off, Long, Established, Exact int
	ContainerID, PodUID           string
}

// oracleCounts reads `kadiag sockets --all -o json` for the given pids.
func oracleCounts(t *testing.T, pids []int) map[int]procCounts {
	t.Helper()
	stdout, stderr, code := runKadiag(t, "sockets", "--all", "-o", "json")
	if code != 0 && code != 1 {
		t.Fatalf("kadiag sockets --all: exit %d: %s", code, stderr)
	}
	var r inspect.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("sockets json: %v", err)
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	out := map[int]procCounts{}
	for _, p := range r.Processes {
		if !want[p.PID] {
			continue
		}
		var c procCounts
		for _, s := range p.Sockets {
			if s.Verdict == inspect.AtRisk {
				if s.Keepalive.Enabled {
					c.Long++
				} else {
					c.Off++
				}
			}
			if s.State == "ESTABLISHED" {
				c.Established++
			}
			if s.Keepalive.Source.IsExact() {
				c.Exact++
			}
		}
		out[p.PID] = c
	}
	return out
}

// promCounts reads the same figures from Prometheus.
func promCounts(t *testing.T, base string, pids []int) map[int]procCounts {
	t.Helper()
	var re []string
	for _, p := range pids {
		re = append(re, strconv.Itoa(p))
	}
	sel := fmt.Sprintf(`{job="kadiag",pid=~"%s"}`, strings.Join(re, "|"))
	out := map[int]procCounts{}
	val := func(s promSample) int {
		f, err := strconv.ParseFloat(s.Value[1].(string), 64)
		if err != nil {
			t.Fatalf("value %v: %v", s.Value, err)
		}
		return int(f)
	}
	for _, s := range promQuery(t, base, "kadiag_tcp_at_risk_connections"+sel) {
		pid, _ := strconv.Atoi(s.Metric["pid"])
		c := out[pid]
		switch s.Metric["reason"] {
		case "keepalive_off":
			c.Off = val(s)
		case "idle_too_long":
			c.Long = val(s)
		default:
			t.Fatalf("unexpected reason in %v", s.Metric)
		}
		c.ContainerID, c.PodUID = s.Metric["container_id"], s.Metric["pod_uid"]
		out[pid] = c
	}
	for _, s := range promQuery(t, base, "kadiag_tcp_established_connections"+sel) {
		pid, _ := strconv.Atoi(s.Metric["pid"])
		c := out[pid]
		c.Established = val(s)
		out[pid] = c
	}
	for _, s := range promQuery(t, base, `kadiag_tcp_sockets{keepalive_source=~"bpf|getsockopt",`+sel[1:]) {
		pid, _ := strconv.Atoi(s.Metric["pid"])
		c := out[pid]
		c.Exact += val(s)
		out[pid] = c
	}
	return out
}

// TestExporterPrometheus: a real Prometheus scrapes the exporter while test
// clients in a namespace open and close connections with known keepalive
// settings; at every step the at-risk counts Prometheus holds per process
// equal what `kadiag sockets --all -o json` reports, and what the clients
// set up.
func TestExporterPrometheus(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "nsenter", "prometheus", "promtool")
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		testenv.Need(t, "python3")
		py, _ = exec.LookPath("python3")
	}
	server, client := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, server, client, 81)
	srv := startLines(t, server.Command(py, "testdata/hold_server.py", "8080"))
	// hold_server prints "ready" once listening; startLines consumed it.

	exp := startExporter(t, "--interval", "1s", "--per-process")
	prom := startPrometheus(t, exp.addr)

	const (
		podUID = "7c0e5e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6"
		ctrID  = "5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100"
	)
	a := startLines(t, client.Command(py, "testdata/conn_client.py", link.A4, "8080"))
	inPod := testenv.MoveToFakePod(t, a.pid, podUID, ctrID)
	b := startLines(t, client.Command(py, "testdata/conn_client.py", link.A6, "8080"))
	// d runs with kadiag's real preload library, which turns keepalive on
	// (first probe after 60 s): its connections are not at risk.
	target, err := preload.Resolve(preload.Auto, "")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := preload.Extract(t.TempDir(), target)
	if err != nil {
		t.Fatal(err)
	}
	dc := client.Command(py, "testdata/conn_client.py", link.A4, "8080")
	dc.Env = append(os.Environ(), "LD_PRELOAD="+lib)
	d := startLines(t, dc)

	// check compares Prometheus with the oracle and with what the clients
	// built (want, by pid; a pid not in want must have no series).
	check := func(step string, pids []int, want map[int]procCounts) {
		t.Helper()
		oracle := oracleCounts(t, pids)
		for _, pid := range pids {
			w, ok := want[pid]
			o, ook := oracle[pid]
			if ok != ook || w.Off != o.Off || w.Long != o.Long {
				t.Fatalf("%s: pid %d: kadiag sockets says %+v (present %v), the clients built %+v (present %v)", step, pid, o, ook, w, ok)
			}
		}
		var got map[int]procCounts
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = promCounts(t, prom, pids)
			same := len(got) == len(oracle)
			for pid, o := range oracle {
				g := got[pid]
				g.ContainerID, g.PodUID = "", ""
				same = same && g == o
			}
			if same {
				break
			}
			if time.Now().After(deadline) {
				resp, err := http.Get(prom + "/api/v1/targets")
				var targets []byte
				if err == nil {
					targets, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				t.Fatalf("%s: Prometheus holds %+v, kadiag sockets --all says %+v\ntargets: %s\nexporter log:\n%s", step, got, oracle, targets, exp.logText())
			}
			time.Sleep(250 * time.Millisecond)
		}
		if g, ok := got[a.pid]; ok && inPod && (g.ContainerID != ctrID || g.PodUID != podUID) {
			t.Errorf("%s: client in fake pod labelled container_id=%q pod_uid=%q", step, g.ContainerID, g.PodUID)
		}
		if g, ok := got[b.pid]; ok && (g.ContainerID != "" || g.PodUID != "") {
			t.Errorf("%s: host client labelled container_id=%q pod_uid=%q", step, g.ContainerID, g.PodUID)
		}
	}

	a.do(t, "open off 3", "open long 2", "open short 2")
	b.do(t, "open off 1")
	d.do(t, "open off 2")
	pids := []int{srv.pid, a.pid, b.pid, d.pid}
	check("step 1", pids, map[int]procCounts{
		srv.pid: {Off: 10}, // accepted sockets inherit the listener's keepalive off
		a.pid:   {Off: 3, Long: 2},
		b.pid:   {Off: 1},
		d.pid:   {},
	})
	// A process whose comm is not UTF-8 (the kernel's 15-byte cut inside a
	// character) and holds a control character is served with the cleaned
	// name, and the others stay (checked again at every step below).
	hostile := startLines(t, client.Command(py, "-c", `import socket, sys
open("/proc/self/comm", "wb").write(b"bad\x1b[2J\xe6\x95")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("ready", flush=True)
sys.stdin.read()`))
	if !testenv.WaitUntil(30*time.Second, func() bool {
		got := promQuery(t, prom, fmt.Sprintf(`kadiag_tcp_sockets{pid="%d",keepalive_source="getsockopt"}`, hostile.pid))
		return len(got) == 1 && got[0].Metric["comm"] == `bad\x1b[2J\xe6\x95`
	}) {
		t.Fatalf("Prometheus has no series with the cleaned comm for pid %d: %+v", hostile.pid,
			promQuery(t, prom, fmt.Sprintf(`kadiag_tcp_sockets{pid="%d"}`, hostile.pid)))
	}
	for _, pid := range []int{a.pid, d.pid} {
		want := "0"
		if pid == d.pid {
			want = "1"
		}
		got := promQuery(t, prom, fmt.Sprintf(`kadiag_preload_mapped{pid="%d"}`, pid))
		if len(got) != 1 || got[0].Value[1] != want {
			t.Errorf("kadiag_preload_mapped for pid %d: %+v, want %s", pid, got, want)
		}
	}

	a.do(t, "close off 2", "close long 1", "open long 3", "close short 1")
	b.do(t, "open long 2")
	c := startLines(t, client.Command(py, "testdata/conn_client.py", link.A4, "8080"))
	c.do(t, "open off 2")
	pids = append(pids, c.pid)
	check("step 2", pids, map[int]procCounts{
		srv.pid: {Off: 17}, // hold_server never closes: closed ones wait in CLOSE_WAIT
		a.pid:   {Off: 1, Long: 4},
		b.pid:   {Off: 1, Long: 2},
		c.pid:   {Off: 2},
		d.pid:   {},
	})

	// A process that exits, and one that closes its last connection, leave
	// the metrics.
	b.stop()
	c.do(t, "close off 2")
	check("step 3", pids, map[int]procCounts{
		srv.pid: {Off: 17},
		a.pid:   {Off: 1, Long: 4},
		d.pid:   {},
	})

	// promtool lints the exporter's output with process series in it.
	resp, err := http.Get("http://" + exp.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), fmt.Sprintf(`pid="%d"`, a.pid)) {
		t.Fatalf("/metrics lacks the client's series:\n%s", body)
	}
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(string(body))
	if out, err := lint.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if up := promQuery(t, prom, `up{job="kadiag"}`); len(up) != 1 || up[0].Value[1] != "1" {
		t.Fatalf("up = %+v", up)
	}

	// SIGTERM stops it cleanly: exit 0, the listener closed.
	exp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exp.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("exporter still running 15s after SIGTERM:\n%s", exp.logText())
	}
	if code := exp.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exporter exit %d after SIGTERM:\n%s", code, exp.logText())
	}
	if !strings.Contains(exp.logText(), "kadiag exporter stopped") {
		t.Fatalf("no clean stop in the log:\n%s", exp.logText())
	}
}

func TestExporterErrors(t *testing.T) {
	tests := []struct {
		args     []string
		contains string
	}{
		{[]string{"exporter"}, "--listen is required"},
		{[]string{"exporter", "--listen", ":0", "--interval", "10ms"}, "too short"},
		{[]string{"exporter", "--listen", ":0", "--max-idle", "sometimes"}, "--max-idle"},
		{[]string{"exporter", "--listen", "256.1.1.1:99999"}, "--listen 256.1.1.1:99999"},
		{[]string{"exporter", "--listen", ":0", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		_, stderr, code := runKadiag(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.contains) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("kadiag %v: exit %d, stderr %q; want exit 2, one line with %q", tt.args, code, stderr, tt.contains)
		}
	}
}
