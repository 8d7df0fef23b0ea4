package exporter

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// Thousands of short-lived processes, in waves: each wave's processes
// connect, are scanned, and end; the next wave has new pids. However many
// come and go, the series stay one label set per name (per-container
// aggregation; host processes by comm) and none carries a pid.
func TestChurnBoundedSeries(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "bash", "sleep")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { b := make([]byte, 1); c.Read(b); c.Close() }()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	const waves, perWave = 5, 400
	e := New(Options{Interval: time.Hour})
	seen := map[int]bool{}
	for w := 0; w < waves; w++ {
		before := accepted.Load()
		// Each process holds a connection and sleeps as "sleep" until the
		// wave's process group is killed.
		wave := exec.Command("bash", "-c", `for i in $(seq `+strconv.Itoa(perWave)+`); do
  (exec 3<>/dev/tcp/127.0.0.1/`+port+` && exec sleep 600) &
done
echo ready; wait`)
		wave.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, _ := wave.StdoutPipe()
		if err := wave.Start(); err != nil {
			t.Fatal(err)
		}
		kill := func() { syscall.Kill(-wave.Process.Pid, syscall.SIGKILL); wave.Wait() }
		t.Cleanup(kill)
		bufio.NewReader(out).ReadString('\n')
		if !testenv.WaitUntil(60*time.Second, func() bool { return accepted.Load()-before >= perWave }) {
			t.Fatalf("wave %d: only %d of %d connections", w, accepted.Load()-before, perWave)
		}
		s, err := e.ScanOnce()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range s.Processes {
			if p.Comm == "sleep" {
				n++
				seen[p.PID] = true
			}
		}
		if n < perWave {
			t.Fatalf("wave %d: the scan saw %d of the wave's %d processes", w, n, perWave)
		}
		got := series(t, e)
		sets := 0
		for l := range got["kadiag_tcp_processes"] {
			if strings.HasPrefix(l, "comm=sleep,") {
				sets++
				if v := got["kadiag_tcp_processes"][l]; v < perWave {
					t.Errorf("wave %d: %s counts %v processes, want at least %d", w, l, v, perWave)
				}
			}
		}
		for l := range got["kadiag_tcp_sockets"] {
			if strings.Contains(l, "pid=") {
				t.Fatalf("a series carries a pid without --per-process: %s", l)
			}
		}
		if sets != 1 {
			t.Fatalf("wave %d: %d label sets for the wave's sleep processes, want 1", w, sets)
		}
		kill()
	}
	if len(seen) < waves*perWave {
		t.Fatalf("%d distinct processes scanned, want %d", len(seen), waves*perWave)
	}
	t.Logf("%d short-lived processes in %d waves, one label set throughout", len(seen), waves)
}
