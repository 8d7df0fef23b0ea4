package bpf

import (
	"errors"
	"net"
	"testing"
	"time"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/kadiag/kadiag/internal/testenv"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var iterSettings = Settings{Idle: 42 * time.Second, Interval: 7 * time.Second, Count: 3}

// pair returns both ends of a loopback connection made in the caller's
// thread's namespace.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func control(t *testing.T, c *net.TCPConn, f func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

func cookie(t *testing.T, c *net.TCPConn) (v uint64) {
	control(t, c, func(fd int) {
		var err error
		v, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			t.Fatal(err)
		}
	})
	return v
}

func values(t *testing.T, c *net.TCPConn) (v Values) {
	control(t, c, func(fd int) {
		g := func(l, n int) int {
			x, err := unix.GetsockoptInt(fd, l, n)
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		v = Values{Keepalive: g(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0, IdleS: g(unix.SOL_TCP, unix.TCP_KEEPIDLE),
			IntervalS: g(unix.SOL_TCP, unix.TCP_KEEPINTVL), Count: g(unix.SOL_TCP, unix.TCP_KEEPCNT), UserTimeoutMs: g(unix.SOL_TCP, unix.TCP_USER_TIMEOUT)}
	})
	return v
}

func checkIter(t *testing.T, ns vns.NsHandle, same bool, c, s *net.TCPConn) {
	t.Helper()
	before, peer := values(t, c), values(t, s)
	want := Values{Keepalive: true, IdleS: 42, IntervalS: 7, Count: 3}

	dry, err := SetByCookie(ns, same, []uint64{cookie(t, c)}, iterSettings, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry) != 1 || dry[0].Before != before || dry[0].After != before {
		t.Fatalf("dry run: %+v, want one record of %+v unchanged", dry, before)
	}
	if got := values(t, c); got != before {
		t.Fatalf("dry run changed the socket: %+v → %+v", before, got)
	}

	res, err := SetByCookie(ns, same, []uint64{cookie(t, c)}, iterSettings, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Cookie != cookie(t, c) || res[0].Before != before || res[0].After != want || res[0].Errs != nil {
		t.Fatalf("iterator reported %+v, want one record %+v → %+v", res, before, want)
	}
	if got := values(t, c); got != want {
		t.Errorf("in-process read back: %+v, want %+v", got, want)
	}
	if got := values(t, s); got != peer {
		t.Errorf("the socket not listed changed: %+v → %+v", peer, got)
	}
}

func TestIterSetsListedSocketOnly(t *testing.T) {
	testenv.Privileged(t)
	c, s := pair(t)
	checkIter(t, vns.None(), true, c, s)
}

func TestIterOtherNetns(t *testing.T) {
	n := testenv.NewNetns(t)
	var c, s *net.TCPConn
	if err := knetns.Do(n.Handle, func() error { c, s = pair(t); return nil }); err != nil {
		t.Fatal(err)
	}
	checkIter(t, n.Handle, false, c, s)
	// The iterator walks only the namespace it was opened in: the same
	// cookie from the host's namespace finds nothing.
	res, err := SetByCookie(vns.None(), true, []uint64{cookie(t, c)}, iterSettings, true)
	if err != nil || len(res) != 0 {
		t.Fatalf("from the host namespace: %+v, %v; want nothing", res, err)
	}
}

func TestIterEnforceKeepsShorter(t *testing.T) {
	testenv.Privileged(t)
	c, s := pair(t)
	control(t, c, func(fd int) {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPIDLE, 5)
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_KEEPCNT, 100)
	})
	_ = s
	if _, err := SetByCookie(vns.None(), true, []uint64{cookie(t, c)}, iterSettings, false); err != nil {
		t.Fatal(err)
	}
	want := Values{Keepalive: true, IdleS: 5, IntervalS: 7, Count: 3}
	if got := values(t, c); got != want {
		t.Errorf("got %+v, want %+v (the shorter idle kept, the longer count shortened)", got, want)
	}
}

func TestNoBTF(t *testing.T) {
	old := vmlinuxPath
	vmlinuxPath = "/nonexistent/vmlinux"
	defer func() { vmlinuxPath = old }()
	_, err := SetByCookie(vns.None(), true, nil, iterSettings, true)
	if !errors.Is(err, ErrNoBTF) {
		t.Fatalf("got %v, want ErrNoBTF", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, s := range []Settings{
		{Idle: 0, Interval: time.Second, Count: 1},
		{Idle: time.Second, Interval: 32768 * time.Second, Count: 1},
		{Idle: time.Second, Interval: time.Second, Count: 128},
		{Idle: 1500 * time.Millisecond, Interval: time.Second, Count: 1},
		{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: -time.Second},
	} {
		if s.Validate() == nil {
			t.Errorf("%+v: accepted", s)
		}
	}
	if err := iterSettings.Validate(); err != nil {
		t.Error(err)
	}
}

// TestIterManySockets: 6,000 sockets, more records than fit in one
// seq_file buffer. The
// kernel runs the program again on a socket whose record did not fit; the
// values before must still be the ones before.
func TestIterManySockets(t *testing.T) {
	testenv.Privileged(t)
	var conns []*net.TCPConn
	before := map[uint64]Values{}
	for i := 0; i < 3000; i++ {
		c, s := pair(t)
		for _, x := range []*net.TCPConn{c, s} {
			conns = append(conns, x)
			before[cookie(t, x)] = values(t, x)
		}
	}
	var cookies []uint64
	for c := range before {
		cookies = append(cookies, c)
	}
	res, err := SetByCookie(vns.None(), true, cookies, iterSettings, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(cookies) {
		t.Fatalf("%d records for %d sockets", len(res), len(cookies))
	}
	for _, r := range res {
		// Go's accepted sockets come with keepalive 15s: kept, shorter.
		want := Values{Keepalive: true, IdleS: min(42, before[r.Cookie].IdleS), IntervalS: 7, Count: 3}
		if !before[r.Cookie].Keepalive {
			want.IdleS = 42
		}
		if r.Before != before[r.Cookie] || r.After != want {
			t.Fatalf("cookie %d: %+v → %+v, want %+v → %+v", r.Cookie, r.Before, r.After, before[r.Cookie], want)
		}
	}
	for _, c := range conns {
		if got := values(t, c); !got.Keepalive || got.Count != 3 {
			t.Fatalf("in-process %+v", got)
		}
	}
}
