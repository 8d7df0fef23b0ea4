package exporter

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// kadiag's real preload library, preloaded into a real process by the real
// loader, is seen as mapped; a process without it is not.
func TestPreloadMapped(t *testing.T) {
	target, err := preload.Resolve(preload.Auto, "")
	if err != nil {
		testenv.SkipOrFail(t, "no preload library for this machine: %v", err)
	}
	lib, err := preload.Extract(t.TempDir(), target)
	if err != nil {
		t.Fatal(err)
	}
	with := exec.Command("sleep", "60")
	with.Env = append(os.Environ(), "LD_PRELOAD="+lib)
	without := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{with, without} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	// The loader maps the library before main; wait until sleep runs.
	if !testenv.WaitUntil(5*time.Second, func() bool { return preloadMapped(with.Process.Pid) }) {
		b, _ := os.ReadFile(filepath.Join(procRoot, itoa(with.Process.Pid), "maps"))
		t.Fatalf("library not seen as mapped; maps:\n%s", b)
	}
	if preloadMapped(without.Process.Pid) {
		t.Fatal("a process without the library is seen as mapping it")
	}
	if preloadMapped(1 << 30) {
		t.Fatal("a missing process is seen as mapping the library")
	}
}

// The metrics pass client_golang's lint (promtool's rules) with a real
// scan's snapshot.
func TestMetricsLint(t *testing.T) {
	testenv.Privileged(t)
	e := New(Options{Interval: time.Second})
	if _, err := e.ScanOnce(); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// Before the first scan only the exporter's own counters are served; the
// health check reports a loop that stopped finishing scans.
func TestHealthAndEmptySnapshot(t *testing.T) {
	e := New(Options{Interval: time.Second})
	if err := e.Healthy(); err != nil {
		t.Fatalf("fresh exporter unhealthy: %v", err)
	}
	if n := testutil.CollectAndCount(e); n != 3 {
		t.Fatalf("before the first scan %d metrics, want 3 (scans, errors, max idle)", n)
	}
	e.lastEnd.Store(time.Now().Add(-4 * time.Second).UnixNano())
	if err := e.Healthy(); err == nil || !strings.Contains(err.Error(), "no scan has finished") {
		t.Fatalf("stale loop: Healthy = %v", err)
	}
}

// Serve answers /healthz and /metrics, scans on its own, and returns nil
// once its context ends.
func TestServeShutdown(t *testing.T) {
	testenv.Privileged(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A node-wide scan on a loaded machine takes seconds: the interval
	// leaves the health check (three intervals) room for it.
	e := New(Options{Interval: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.WaitUntil(10*time.Second, func() bool { return e.Snapshot() != nil })
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != 200 || body != "ok\n" {
			t.Fatalf("%s after the first scan: %d %q", path, code, body)
		}
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "kadiag_scan_duration_seconds") || !strings.Contains(body, "go_memstats_heap_alloc_bytes") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("/nope: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// A scrape is answered from the last snapshot while a scan is in progress:
// the scan below is held open until the scrape has returned.
func TestScrapeDoesNotWaitForScan(t *testing.T) {
	e := New(Options{Interval: time.Hour})
	first := &Snapshot{Processes: []ProcessStats{{PID: 4242, Comm: "held", AtRiskKeepaliveOff: 2}}}
	e.snap.Store(first)
	entered, release := make(chan struct{}), make(chan struct{})
	e.scan = func(Options) (*Snapshot, error) {
		close(entered)
		<-release
		return &Snapshot{}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	<-entered
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `kadiag_tcp_at_risk_connections{comm="held",container="",container_id="",namespace="",pod="",pod_uid="",reason="keepalive_off"} 2`) {
		t.Fatalf("scrape during a scan did not serve the last snapshot:\n%s", body)
	}
	close(release)
	cancel()
	<-done
	if e.Snapshot() == first {
		t.Fatal("the finished scan was not published")
	}
}

// /healthz is liveness, /readyz readiness: while the first scan runs the
// loop is alive but /metrics would show no process at all, so only
// /readyz holds back. A failed first scan fails both, with its reason.
func TestReadyWaitsForFirstScan(t *testing.T) {
	tests := []struct {
		name              string
		scanErr           error
		health, readyNow  int
		readyAfter        int
		readyAfterMessage string
	}{
		{name: "scan succeeds", health: 200, readyNow: 503, readyAfter: 200, readyAfterMessage: "ok"},
		{name: "scan fails", scanErr: errors.New("list processes: permission denied"), health: 200, readyNow: 503, readyAfter: 503, readyAfterMessage: "no scan has succeeded yet: list processes: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{Interval: time.Hour})
			entered, release := make(chan struct{}), make(chan struct{})
			e.scan = func(Options) (*Snapshot, error) {
				close(entered)
				<-release
				if tt.scanErr != nil {
					return nil, tt.scanErr
				}
				return &Snapshot{}, nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { e.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			<-entered
			srv := httptest.NewServer(e.Handler())
			defer srv.Close()
			get := func(path string) (int, string) {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, strings.TrimSpace(string(b))
			}
			if code, body := get("/healthz"); code != tt.health {
				t.Errorf("/healthz during the first scan: %d %q, want %d", code, body, tt.health)
			}
			if code, body := get("/readyz"); code != tt.readyNow || body != "the first scan is still running" {
				t.Errorf("/readyz during the first scan: %d %q, want %d", code, body, tt.readyNow)
			}
			close(release)
			for e.scans.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			if code, body := get("/readyz"); code != tt.readyAfter || body != tt.readyAfterMessage {
				t.Errorf("/readyz after the first scan: %d %q, want %d %q", code, body, tt.readyAfter, tt.readyAfterMessage)
			}
		})
	}
}
