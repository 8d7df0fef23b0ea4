package fix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/bpf/bpftest"
	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

var fixed = Options{Keepalive: true, IdleS: 60, IntervalS: 15, Count: 4}

// only returns the one socket of the report whose peer is remote.
func only(t *testing.T, r *Report, remote string) Socket {
	t.Helper()
	var out []Socket
	for _, s := range r.Sockets {
		if s.Remote == remote {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one socket to %s, report has %+v", remote, r.Sockets)
	}
	return out[0]
}

func inProcess(o sockOpts) Options {
	return Options{Keepalive: o.Keepalive != 0, IdleS: o.Idle, IntervalS: o.Intvl, Count: o.Cnt, UserTimeoutMs: max(o.UserTimeout, 0)}
}

// TestLivePIDRuntimes fixes the open connection of a static C binary, a Go
// binary with KeepAlive -1, python3 and a JDK 17 client that called
// setKeepAlive(false), each in a cgroup of its own and in a network
// namespace other than kadiag's; the result is read back inside the process
// and with ss -tonie.
func TestLivePIDRuntimes(t *testing.T) {
	l := newLab(t)
	remote := fmt.Sprintf("%s:%d", l.link.A4, l.port4)
	for _, kind := range []string{"c", "go", "python", "java"} {
		t.Run(kind, func(t *testing.T) {
			c := l.startClient(t, kind, bpftest.Cgroup(t), l.link.A4, l.port4)
			if c.first[0].Keepalive != 0 {
				t.Fatalf("client starts with keepalive on: %+v", c.first)
			}
			r, err := PID(c.pid(), LiveOptions{Settings: DefaultSettings()})
			if err != nil {
				t.Fatal(err)
			}
			s := only(t, r, remote)
			if s.Action != Changed || s.Before.Keepalive || s.After != fixed {
				t.Fatalf("socket: %+v, want changed off → %+v", s, fixed)
			}
			if want := []string{"SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"}; strings.Join(s.Plan, ",") != strings.Join(want, ",") {
				t.Errorf("plan %v, want %v (SO_KEEPALIVE first)", s.Plan, want)
			}
			if got := inProcess(c.ask(t, "dump")[0]); got != fixed {
				t.Errorf("read inside the process: %+v, want %+v", got, fixed)
			}
			if left := l.ssKeepalive(t, s.Inode); left < 1 || left > 60 {
				t.Errorf("ss -tonie: keepalive timer %ds, want one armed for at most 60s: %s", left, l.ssLine(t, s.Inode))
			}
			if !strings.Contains(l.ssLine(t, s.Inode), fmt.Sprintf("sk:%x", s.Cookie)) {
				t.Errorf("cookie %x is not the one ss -e shows: %s", s.Cookie, l.ssLine(t, s.Inode))
			}
			again, err := PID(c.pid(), LiveOptions{Settings: DefaultSettings()})
			if err != nil {
				t.Fatal(err)
			}
			if s2 := only(t, again, remote); s2.Action != Unchanged || len(s2.Plan) != 0 {
				t.Errorf("second run: %+v, want unchanged", s2)
			}
		})
	}
}

// TestCgroupRuntimes runs each client in a cgroup with the policy held:
// every new connection gets keepalive, and a later setsockopt(SO_KEEPALIVE,
// 0) (the JDK client makes one right after connect) is rewritten to 1.
// After the policy is released, new connections are untouched.
func TestCgroupRuntimes(t *testing.T) {
	l := newLab(t)
	dir := bpftest.Cgroup(t)
	s := DefaultSettings()
	s.UserTimeout = 30 * time.Second
	r, held, err := Cgroup(dir, s, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Policies) != 1 || r.Policies[0].Pinned != "" {
		t.Fatalf("held policy: %+v", r.Policies)
	}
	lr, err := List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range lr.Policies {
		if p.Cgroup == dir {
			found = p.Pinned == "" && p.HolderPID == os.Getpid() && p.Settings.UserTimeoutMs == 30000
		}
	}
	if !found {
		t.Errorf("List does not show the held policy on %s: %+v", dir, lr.Policies)
	}
	want := fixed
	want.UserTimeoutMs = 30000
	for _, kind := range []string{"c", "go", "python", "java"} {
		t.Run(kind, func(t *testing.T) {
			c := l.startClient(t, kind, dir, l.link.A4, l.port4, "off")
			for i, got := range [][]sockOpts{c.first, c.ask(t, "off")} {
				o := inProcess(got[0])
				if kind == "java" {
					o.UserTimeoutMs = 30000 // the JDK has no getter for it
				}
				if o != want {
					t.Errorf("read inside the process (%d): %+v, want %+v", i, o, want)
				}
			}
			ino := uint64(0)
			if got := c.first[0]; got.FD >= 0 {
				ino = inodeOf(t, c.pid(), got.FD)
			} else {
				// The JDK does not tell its descriptor: the process's one
				// socket connected to the lab's server.
				ino = connectedInode(t, c.pid(), fmt.Sprintf("%s:%d", l.link.A4, l.port4))
			}
			if left := l.ssKeepalive(t, ino); left < 1 || left > 60 {
				t.Errorf("ss -tonie: keepalive timer %ds, want one armed for at most 60s: %s", left, l.ssLine(t, ino))
			}
		})
	}
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	c := l.startClient(t, "python", dir, l.link.A4, l.port4)
	if got := c.first[0]; got.Keepalive != 0 || got.Idle == 60 {
		t.Errorf("after release a new connection is still touched: %+v", got)
	}
}

// TestCgroupPinnedRemove: pinned by default, listed, replaced, removed.
func TestCgroupPinnedRemove(t *testing.T) {
	dir := bpftest.Cgroup(t)
	t.Cleanup(func() { bpf.Detach(dir) })
	if _, _, err := Cgroup(dir, DefaultSettings(), false, false); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Idle = 20 * time.Second
	r, _, err := Cgroup(dir, s, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Policies[0].Replaced || r.Policies[0].Pinned == "" {
		t.Errorf("re-run: %+v, want pinned and replaced", r.Policies[0])
	}
	lr, err := List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range lr.Policies {
		if p.Cgroup == dir {
			n++
			if p.Settings.KeepidleS != 20 {
				t.Errorf("listed %+v, want keepidle 20", p)
			}
		}
	}
	if n != 1 {
		t.Errorf("List shows %d policies on %s, want 1: %+v", n, dir, lr.Policies)
	}
	if _, err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Remove(dir); !errors.Is(err, ErrNotAttached) {
		t.Errorf("second Remove: %v, want ErrNotAttached", err)
	}

	// A cgroup deleted with its policy pinned: listed with a note, removed
	// by the path it was attached with.
	gone := bpftest.Sub(t, dir, "deleted")
	if _, _, err := Cgroup(gone, DefaultSettings(), false, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	lr, err = List()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lr.Notes, "\n"), gone+" no longer exists") {
		t.Errorf("List notes %q: want one about %s", lr.Notes, gone)
	}
	rr, err := Remove(gone)
	if err != nil {
		t.Fatalf("Remove of a deleted cgroup's policy: %v", err)
	}
	if rr.Policies[0].Cgroup != gone {
		t.Errorf("removed %+v", rr.Policies[0])
	}
}

// TestLiveAccepted fixes a listener and the socket it accepted; a socket
// accepted after the fix inherits the options from the listener.
func TestLiveAccepted(t *testing.T) {
	l := newLab(t)
	srv := l.startClient(t, "python", "", l.link.B4, 8080, "serve")
	dial := func() {
		if err := l.server.Do(func() error {
			c, err := net.Dial("tcp", l.link.B4+":8080")
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	dial()
	srv.ask(t, "accept")
	r, err := PID(srv.pid(), LiveOptions{Settings: DefaultSettings()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Changed != 2 {
		t.Fatalf("want listener and accepted socket changed: %+v", r.Sockets)
	}
	for _, s := range r.Sockets {
		if s.After != fixed {
			t.Errorf("%s %s: after %+v", s.State, s.Local, s.After)
		}
	}
	dial()
	got := srv.ask(t, "accept")
	if len(got) != 3 || inProcess(got[2]) != fixed {
		t.Errorf("socket accepted after the fix: %+v, want it to inherit %+v", got, fixed)
	}
}

func TestLiveIPv6(t *testing.T) {
	l := newLab(t)
	c := l.startClient(t, "python", "", l.link.A6, l.port6)
	r, err := PID(c.pid(), LiveOptions{Settings: DefaultSettings()})
	if err != nil {
		t.Fatal(err)
	}
	s := only(t, r, fmt.Sprintf("[%s]:%d", l.link.A6, l.port6))
	if s.Family != "inet6" || s.Action != Changed || s.After != fixed {
		t.Fatalf("%+v", s)
	}
	if got := inProcess(c.ask(t, "dump")[0]); got != fixed {
		t.Errorf("in-process %+v", got)
	}
	if left := l.ssKeepalive(t, s.Inode); left < 1 {
		t.Errorf("ss shows no keepalive timer: %s", l.ssLine(t, s.Inode))
	}
}

// TestLiveMPTCP: MPTCP sockets take the keepalive options but have no
// TCP_USER_TIMEOUT; the fix sets the rest and says so.
func TestLiveMPTCP(t *testing.T) {
	l := newLab(t)
	c := l.startClient(t, "python", "", l.link.A4, l.port4, "mptcp")
	s := DefaultSettings()
	s.UserTimeout = 20 * time.Second
	r, err := PID(c.pid(), LiveOptions{Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	sk := only(t, r, fmt.Sprintf("%s:%d", l.link.A4, l.port4))
	if sk.Protocol != "mptcp" || sk.Action != Changed || sk.After != fixed || !strings.Contains(sk.Reason, "MPTCP") {
		t.Fatalf("%+v", sk)
	}
	if got := inProcess(c.ask(t, "dump")[0]); got != fixed {
		t.Errorf("in-process %+v", got)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	l := newLab(t)
	c := l.startClient(t, "python", "", l.link.A4, l.port4)
	r, err := PID(c.pid(), LiveOptions{Settings: DefaultSettings(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	s := only(t, r, fmt.Sprintf("%s:%d", l.link.A4, l.port4))
	if s.Action != WouldChange || s.After != s.Before || len(s.Plan) != 4 {
		t.Fatalf("%+v", s)
	}
	if got := c.ask(t, "dump")[0]; got != c.first[0] {
		t.Errorf("dry run changed the socket: %+v → %+v", c.first[0], got)
	}
	if left := l.ssKeepalive(t, s.Inode); left != -1 {
		t.Errorf("ss shows a keepalive timer after a dry run: %s", l.ssLine(t, s.Inode))
	}
}

// TestEnforceKeepsShorter works on this very process's socket: a shorter
// idle the application chose stays, a longer count is shortened, only the
// options named change.
func TestEnforceKeepsShorter(t *testing.T) {
	testenv.Privileged(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, _ := c.(*net.TCPConn).SyscallConn()
	var fd int
	rc.Control(func(f uintptr) {
		fd = int(f)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPIDLE, 10)
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPINTVL, 15)
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPCNT, 100)
	})
	// Without --all-sockets a loopback peer is skipped.
	r, err := PID(os.Getpid(), LiveOptions{Settings: DefaultSettings()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Sockets {
		if s.FD == fd && (s.Action != Skipped || !strings.Contains(s.Reason, "--all-sockets")) {
			t.Errorf("loopback socket: %+v, want skipped", s)
		}
	}
	r, err = PID(os.Getpid(), LiveOptions{Settings: DefaultSettings(), AllSockets: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Sockets {
		if s.FD != fd {
			continue
		}
		want := Options{Keepalive: true, IdleS: 10, IntervalS: 15, Count: 4}
		if s.Action != Changed || s.After != want || strings.Join(s.Plan, ",") != "TCP_KEEPCNT" {
			t.Errorf("%+v, want only TCP_KEEPCNT changed to %+v", s, want)
		}
		return
	}
	t.Fatalf("fd %d not in the report", fd)
}

// TestPIDExitsMidway: the process ends after the first socket; the report
// keeps what was done and says the rest was not touched.
func TestPIDExitsMidway(t *testing.T) {
	l := newLab(t)
	srv := l.startClient(t, "python", "", l.link.B4, 8081, "serve")
	for i := 0; i < 3; i++ {
		if err := l.server.Do(func() error {
			c, err := net.Dial("tcp", l.link.B4+":8081")
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv.ask(t, "accept")
	}
	testHookAfterSocket = func(i int) {
		if i == 0 {
			srv.cmd.Process.Signal(syscall.SIGKILL)
			srv.cmd.Process.Wait()
		}
	}
	defer func() { testHookAfterSocket = nil }()
	r, err := PID(srv.pid(), LiveOptions{Settings: DefaultSettings()})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sockets) != 1 || r.Sockets[0].Action != Changed || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "exited during the fix") {
		t.Fatalf("sockets %+v notes %q", r.Sockets, r.Notes)
	}
	if _, err := PID(srv.pid(), LiveOptions{Settings: DefaultSettings()}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("gone pid: %v, want ErrNoProcess", err)
	}
}

// TestViaBPF fixes a process in another network namespace through the TCP
// iterator, which selects its socket by cookie.
func TestViaBPF(t *testing.T) {
	l := newLab(t)
	c := l.startClient(t, "python", "", l.link.A4, l.port4)
	other := l.startClient(t, "python", "", l.link.A4, l.port4)
	r, err := PID(c.pid(), LiveOptions{Settings: DefaultSettings(), Via: ViaBPF})
	if err != nil {
		t.Fatal(err)
	}
	s := only(t, r, fmt.Sprintf("%s:%d", l.link.A4, l.port4))
	if s.Action != Changed || s.After != fixed || s.Before.Keepalive {
		t.Fatalf("%+v", s)
	}
	if got := inProcess(c.ask(t, "dump")[0]); got != fixed {
		t.Errorf("in-process %+v", got)
	}
	if got := other.ask(t, "dump")[0]; got != other.first[0] {
		t.Errorf("another process's socket in the namespace changed: %+v → %+v", other.first[0], got)
	}
	if !strings.Contains(l.ssLine(t, s.Inode), fmt.Sprintf("sk:%x", s.Cookie)) {
		t.Errorf("cookie %x is not the one ss -e shows: %s", s.Cookie, l.ssLine(t, s.Inode))
	}
	dry, err := PID(other.pid(), LiveOptions{Settings: DefaultSettings(), Via: ViaBPF, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := only(t, dry, s.Remote); d.Action != WouldChange || other.ask(t, "dump")[0] != other.first[0] {
		t.Errorf("dry run via bpf: %+v", d)
	}
}

func TestViaBPFNoBTF(t *testing.T) {
	testenv.Privileged(t)
	defer bpf.SetKernelBTFPathForTest("/nonexistent/vmlinux")()
	_, err := PID(os.Getpid(), LiveOptions{Settings: DefaultSettings(), Via: ViaBPF})
	if !errors.Is(err, ErrNoBTF) || !strings.Contains(err.Error(), "--via bpf") {
		t.Fatalf("got %v, want ErrNoBTF naming --via bpf", err)
	}
}

// TestWatch: with short timings the probes of a live peer are answered;
// when the peer's link goes down the kernel gives up and the application
// gets an error: forgotten.
func TestWatch(t *testing.T) {
	l := newLab(t)
	alive := l.startClient(t, "python", "", l.link.A4, l.port4)
	lost := l.startClient(t, "python", "", l.link.A4, l.port4)
	s := Settings{Idle: time.Second, Interval: time.Second, Count: 2}
	r, err := PID(alive.pid(), LiveOptions{Settings: s, Watch: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if w := only(t, r, fmt.Sprintf("%s:%d", l.link.A4, l.port4)).Watch; w == nil || w.Outcome != Alive || w.Answered < 1 {
		t.Errorf("live peer: %+v, want alive", w)
	}
	h := l.server.Netlink(t)
	link, err := h.LinkByName(l.link.AName)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	r, err = PID(lost.pid(), LiveOptions{Settings: s, Watch: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if w := only(t, r, fmt.Sprintf("%s:%d", l.link.A4, l.port4)).Watch; w == nil || w.Outcome != Forgotten || w.Closed != "timeout" {
		t.Errorf("peer gone: %+v, want forgotten after a timeout", w)
	}
	if r.Summary.Forgotten != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := PID(0, LiveOptions{Settings: DefaultSettings()}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("pid 0: %v", err)
	}
	if _, err := PID(1<<30, LiveOptions{Settings: DefaultSettings()}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("no such pid: %v", err)
	}
	if _, err := PID(os.Getpid(), LiveOptions{Settings: Settings{Idle: time.Second}}); err == nil {
		t.Error("count 0 accepted")
	}
	if _, err := ResolveCgroup("/definitely/not/a/cgroup"); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("ResolveCgroup: %v", err)
	}
}

// TestManySockets: a process with more sockets than parallelFrom is fixed
// by several workers; every socket is fixed once, in descriptor order, and
// reads back the settings in-process.
func TestManySockets(t *testing.T) {
	testenv.Privileged(t)
	lc := net.ListenConfig{KeepAlive: -1} // Go would turn keepalive on
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{KeepAlive: -1}
	var conns []*net.TCPConn
	for i := 0; i < 300; i++ {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c.(*net.TCPConn), a.(*net.TCPConn))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	s := DefaultSettings()
	s.Idle = 41 * time.Second
	r, err := PID(os.Getpid(), LiveOptions{Settings: s, AllSockets: true})
	if err != nil {
		t.Fatal(err)
	}
	byFD := map[int]Socket{}
	last := -1
	for _, sk := range r.Sockets {
		if sk.FD <= last {
			t.Fatalf("sockets out of order: fd %d after %d", sk.FD, last)
		}
		last = sk.FD
		byFD[sk.FD] = sk
	}
	want := Options{Keepalive: true, IdleS: 41, IntervalS: 15, Count: 4}
	for _, c := range conns {
		rc, _ := c.SyscallConn()
		rc.Control(func(f uintptr) {
			sk, ok := byFD[int(f)]
			if !ok || sk.Action != Changed || sk.After != want {
				t.Fatalf("fd %d: %+v (listed %v)", f, sk, ok)
			}
			if v, _ := unix.GetsockoptInt(int(f), unix.SOL_TCP, unix.TCP_KEEPIDLE); v != 41 {
				t.Fatalf("fd %d: TCP_KEEPIDLE %d in-process", f, v)
			}
		})
	}
}
