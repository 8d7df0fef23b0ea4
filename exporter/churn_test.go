package exporter

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// Thousands of short-lived processes, each holding a TCP connection for a
// moment, while the exporter scans: the number of series stays bounded by
// the names in use (per-container aggregation; host processes by comm),
// not by the processes that came and went, and no series carries a pid.
func TestChurnBoundedSeries(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "bash")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { b := make([]byte, 1); c.Read(b); c.Close() }()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	e := New(Options{Interval: time.Hour})
	if _, err := e.ScanOnce(); err != nil {
		t.Fatal(err)
	}

	const n = 2000
	churn := exec.Command("bash", "-c", `for i in $(seq `+strconv.Itoa(n)+`); do
  (exec 3<>/dev/tcp/127.0.0.1/`+port+` && sleep 0.3) &
  if (( i % 200 == 0 )); then wait; fi
done; wait`)
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- churn.Wait() }()
	scans, maxSeries, maxProcs, maxChurnSeries := 0, 0, 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("churn: %v", err)
			}
			running = false
		default:
		}
		s, err := e.ScanOnce()
		if err != nil {
			t.Fatal(err)
		}
		scans++
		churning := 0
		for _, p := range s.Processes {
			if p.Comm == "bash" || p.Comm == "sleep" {
				churning++
			}
		}
		maxProcs = max(maxProcs, churning)
		got := series(t, e)
		maxSeries = max(maxSeries, len(got["kadiag_tcp_processes"]))
		churnSeries := 0
		for l := range got["kadiag_tcp_processes"] {
			if strings.HasPrefix(l, "comm=bash,") || strings.HasPrefix(l, "comm=sleep,") {
				churnSeries++
			}
		}
		maxChurnSeries = max(maxChurnSeries, churnSeries)
		for l := range got["kadiag_tcp_sockets"] {
			if strings.Contains(l, "pid=") {
				t.Fatalf("a series carries a pid without --per-process: %s", l)
			}
		}
	}
	t.Logf("%d scans during %d short-lived processes: up to %d of them with sockets in one scan, %d label sets for them, up to %d label sets on the node", scans, n, maxProcs, maxChurnSeries, maxSeries)
	if maxProcs < 50 {
		t.Fatalf("the scans saw at most %d of the short-lived processes: the test did not churn", maxProcs)
	}
	// Other tests on the host come and go; the churn's own processes are
	// named bash and sleep and must stay two label sets at most.
	if maxChurnSeries > 2 {
		t.Fatalf("%d label sets for the short-lived bash and sleep processes", maxChurnSeries)
	}
}
