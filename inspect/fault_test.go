package inspect

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/vishvananda/netns"
)

// A scanner run as a child (inside a pid namespace): it starts one socket
// helper (ScanAll leaves the scanner itself out), then prints ScanAll's JSON.
func init() {
	if os.Getenv("KADIAG_SCAN_HELPER") != "1" {
		return
	}
	child := exec.Command(os.Args[0], "listen4,127.0.0.1:0,ka=1,idle=21")
	child.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=1", "KADIAG_SCAN_HELPER=0")
	out, _ := child.StdoutPipe()
	// The helper holds its sockets until its stdin closes.
	hold, _ := child.StdinPipe()
	defer hold.Close()
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	r, err := ScanAll(Options{})
	child.Process.Kill()
	child.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

// fdCount is the number of open descriptors of this process.
func fdCount(t *testing.T) int {
	t.Helper()
	loadReaders() // the BPF programs a first scan loads stay: not a leak
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// threadsOutsideHost lists threads of this process whose network namespace
// is not the one the process started in: a scan that returned a thread to
// the pool while switched would show here.
func threadsOutsideHost(t *testing.T) []string {
	t.Helper()
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	var bad []string
	for _, task := range tasks {
		if ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net")); err == nil && ns != host {
			bad = append(bad, task.Name()+":"+ns)
		}
	}
	return bad
}

// checkNoLeaks compares descriptors and namespace switches with a baseline.
func checkNoLeaks(t *testing.T, fds int) {
	t.Helper()
	// Closing is synchronous, but give finalizers of dropped files a turn.
	runtime.GC()
	if now := fdCount(t); now > fds {
		t.Errorf("descriptors: %d before the scans, %d after: a leak", fds, now)
	}
	if bad := threadsOutsideHost(t); len(bad) > 0 {
		t.Errorf("threads left in another network namespace: %v", bad)
	}
}

// TestScanWhileProcessesDie scans twelve processes, three connections each,
// again and again while they are killed one by one at random moments: every
// scan returns a report (or ErrNoProcess once all are gone), names each
// vanished process in a note, and the scanner leaks no descriptor.
func TestScanWhileProcessesDie(t *testing.T) {
	l := newLab(t, 71)
	var procs []*started
	var pids []int
	for i := 0; i < 12; i++ {
		p := start(t, helper(l.client, "dial4,"+l.link.A4+":8080,ka=1,idle=30", "dial4,"+l.link.A4+":8080", "dial6,["+l.link.A6+"]:8080,ka=1"))
		procs = append(procs, p)
		pids = append(pids, p.pid)
	}
	fds := fdCount(t)
	var alive atomic.Int32
	alive.Store(int32(len(procs)))
	var killed sync.Map
	go func() {
		for i, p := range procs {
			time.Sleep(time.Duration(5+i%7) * time.Millisecond)
			killed.Store(p.pid, true)
			p.cmd.Process.Kill()
			alive.Add(-1)
		}
	}()
	scans := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); scans++ {
		left := alive.Load()
		r, err := ScanPIDs(pids, Options{})
		if err != nil {
			if alive.Load() == 0 {
				break
			}
			// A pid already gone when the scan starts is the caller's
			// mistake: an error naming it. Gone during the scan: a note.
			gone := false
			killed.Range(func(k, _ any) bool {
				gone = gone || strings.Contains(err.Error(), fmt.Sprintf("pid %d:", k))
				return true
			})
			if !errors.Is(err, ErrNoProcess) || !gone || strings.Contains(err.Error(), "\n") {
				t.Fatalf("scan %d with %d processes alive: %v", scans, left, err)
			}
			continue
		}
		for _, p := range r.Processes {
			if len(p.Sockets) > 3 {
				t.Fatalf("pid %d: %d sockets, it has 3", p.PID, len(p.Sockets))
			}
			for _, s := range p.Sockets {
				if s.State == "" || s.Family == "" || s.Verdict == "" {
					t.Fatalf("pid %d: half-read socket %+v", p.PID, s)
				}
			}
		}
		if missing := len(pids) - len(r.Processes); missing > 0 && len(r.Notes) == 0 {
			t.Fatalf("scan %d: %d processes missing without a note", scans, missing)
		}
	}
	for _, p := range procs {
		p.cmd.Wait()
	}
	t.Logf("%d scans while 12 processes died", scans)
	checkNoLeaks(t, fds)
}

// TestScanWhileSocketsChurn scans this very process while it opens and
// closes thousands of loopback connections inside a namespace: each scan
// is a consistent report, and nothing leaks.
func TestScanWhileSocketsChurn(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NewNetns(t)
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp6", "[::1]:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64 // accepted connections not closed yet
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() { c.Read(make([]byte, 1)); c.Close(); served.Add(-1) }()
		}
	}()
	fds := fdCount(t)
	stop := make(chan struct{})
	var opened atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Dial from a thread inside the namespace; connections keep it.
		ns.Do(func() error {
			var open []net.Conn
			for {
				select {
				case <-stop:
					for _, c := range open {
						c.Close()
					}
					return nil
				default:
				}
				c, err := net.Dial("tcp6", ln.Addr().String())
				if err != nil {
					continue
				}
				opened.Add(1)
				open = append(open, c)
				if len(open) > 300 {
					for _, c := range open[:50] {
						c.Close()
					}
					open = append(open[:0], open[50:]...)
				}
			}
		})
	}()
	scans := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) || opened.Load() < 2000; scans++ {
		r, err := ScanPIDs([]int{os.Getpid()}, Options{})
		if err != nil {
			t.Fatalf("scan %d: %v", scans, err)
		}
		for _, s := range r.Processes[0].Sockets {
			if s.State == "" || s.Keepalive.Source == "" {
				t.Fatalf("scan %d: half-read socket %+v", scans, s)
			}
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("only %d connections opened in 25s", opened.Load())
		}
	}
	close(stop)
	wg.Wait()
	// The server's side of each connection closes once it reads the
	// client's end: wait for that, or its descriptors count as the scan's.
	for i := 0; served.Load() > 0 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d scans while %d connections were opened and closed", scans, opened.Load())
	checkNoLeaks(t, fds)
}

// TestScanNetnsDisappears deletes a namespace (its bind mount, and the last
// process in it) while it is being scanned by path and by process: scans in
// flight finish, later ones fail with ErrNetns or ErrNoProcess in one line,
// and no scanner thread is left inside the dead namespace.
func TestScanNetnsDisappears(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "nsenter")
	name := fmt.Sprintf("kadiag-gone-%d", os.Getpid())
	h, err := knetns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	path := "/run/netns/" + name
	t.Cleanup(func() { netns.DeleteNamed(name) })
	ns := &testenv.Netns{Name: name, Path: path}
	holder := start(t, helper(ns, "listen4,127.0.0.1:9000,ka=1,idle=9", "listen4,127.0.0.1:9001"))

	fds := fdCount(t)
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		sawNetns, sawProc bool
	)
	for _, scan := range []func() error{
		func() error { _, err := ScanNetns(path, Options{}); return err },
		func() error { _, err := ScanPIDs([]int{holder.pid}, Options{}); return err },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
				err := scan()
				if err == nil {
					continue
				}
				mu.Lock()
				switch {
				case errors.Is(err, ErrNetns):
					sawNetns = true
				case errors.Is(err, ErrNoProcess):
					sawProc = true
				default:
					t.Errorf("unexpected error: %v", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error on several lines: %q", err)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := netns.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	holder.cmd.Process.Kill() // the last reference: the namespace is gone
	wg.Wait()
	if !sawNetns || !sawProc {
		t.Errorf("after the namespace went away: ErrNetns seen %v, ErrNoProcess seen %v", sawNetns, sawProc)
	}
	checkNoLeaks(t, fds)
}

// TestPidNamespaceBoundary: a process in its own pid namespace (as in a
// container) is scanned from the host by its host pid with exact values;
// a scanner inside a pid namespace with its own /proc sees its child under
// that namespace's pid, read exactly, and nothing of the host.
func TestPidNamespaceBoundary(t *testing.T) {
	l := newLab(t, 72)
	testenv.Need(t, "unshare")
	// nsenter (net) -> unshare (pid) -> fork -> helper as pid 1.
	cmd := exec.Command("nsenter", "--net="+l.client.Path, "--", "unshare", "--pid", "--fork", "--mount-proc",
		os.Args[0], "dial4,"+l.link.A4+":8080,ka=1,idle=33,intvl=4,cnt=2,ut=7000")
	cmd.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=1")
	p := start(t, cmd)
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid, p.pid))
	if err != nil {
		t.Fatal(err)
	}
	hostPID, err := strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("helper pid from %q: %v", children, err)
	}
	if status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", hostPID)); !strings.Contains(string(status), "NSpid:\t"+strconv.Itoa(hostPID)+"\t1\n") {
		t.Fatalf("pid %d is not pid 1 of its own namespace:\n%s", hostPID, status)
	}
	r, err := ScanPIDs([]int{hostPID}, Options{})
	if err != nil || len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 1 || len(p.sockets) != 1 {
		t.Fatalf("scan of the host pid: %v %+v", err, r)
	}
	checkExact(t, r.Processes[0].Sockets[0], p.sockets[0])

	out, err := func() ([]byte, error) {
		c := exec.Command("unshare", "--pid", "--fork", "--mount-proc", os.Args[0])
		c.Env = append(os.Environ(), "KADIAG_SCAN_HELPER=1")
		return c.Output()
	}()
	if err != nil {
		t.Fatalf("scanner in a pid namespace: %v", err)
	}
	var inner Report
	if err := json.Unmarshal(out, &inner); err != nil {
		t.Fatal(err)
	}
	if len(inner.Processes) != 1 || inner.Processes[0].PID < 2 || inner.Processes[0].PID > 64 || len(inner.Processes[0].Sockets) != 1 ||
		inner.Processes[0].Sockets[0].State != "LISTEN" || !inner.Processes[0].Sockets[0].Keepalive.Source.IsExact() ||
		inner.Processes[0].Sockets[0].Keepalive.IdleS != 21 {
		t.Errorf("inside the pid namespace: want only its child, a small pid of that namespace, with its listener read exactly (idle 21s): %+v", inner.Processes)
	}
}
