package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// oracle is what getsockopt answers on the descriptor itself.
type oracle struct {
	Values
	protocol int
	v6only   bool
	local    netip.AddrPort
	cookie   uint64
}

func readOracle(t *testing.T, fd int) oracle {
	t.Helper()
	g := func(l, n int) int {
		x, err := unix.GetsockoptInt(fd, l, n)
		if err != nil {
			t.Fatalf("getsockopt %d/%d: %v", l, n, err)
		}
		return x
	}
	o := oracle{protocol: g(unix.SOL_SOCKET, unix.SO_PROTOCOL)}
	o.Keepalive = g(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
	o.IdleS = g(unix.SOL_TCP, unix.TCP_KEEPIDLE)
	o.IntervalS = g(unix.SOL_TCP, unix.TCP_KEEPINTVL)
	o.Count = g(unix.SOL_TCP, unix.TCP_KEEPCNT)
	if o.protocol != IPProtoMPTCP { // MPTCP has no TCP_USER_TIMEOUT
		o.UserTimeoutMs = g(unix.SOL_TCP, unix.TCP_USER_TIMEOUT)
	}
	if dom := g(unix.SOL_SOCKET, unix.SO_DOMAIN); dom == unix.AF_INET6 {
		o.v6only = g(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) != 0
	}
	var err error
	if o.cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		o.local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		o.local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return o
}

func inode(t *testing.T, fd int) uint64 {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// sockCase is one socket the tests make and the iterator must read as
// getsockopt does.
type sockCase struct {
	name   string
	family int // AF_INET, AF_INET6
	mptcp  bool
	listen bool
	v6only bool
	opts   [][3]int // setsockopt level, name, value, in order
}

var sockCases = []sockCase{
	{name: "v4 listener, defaults", family: unix.AF_INET, listen: true},
	{name: "v6 listener, v6only, keepalive custom", family: unix.AF_INET6, listen: true, v6only: true,
		opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.SOL_TCP, unix.TCP_KEEPIDLE, 61}, {unix.SOL_TCP, unix.TCP_KEEPINTVL, 13}, {unix.SOL_TCP, unix.TCP_KEEPCNT, 4}}},
	{name: "v4 keepalive off", family: unix.AF_INET},
	{name: "v4 keepalive default", family: unix.AF_INET, opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}}},
	{name: "v6 keepalive custom, user timeout", family: unix.AF_INET6,
		opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.SOL_TCP, unix.TCP_KEEPIDLE, 17}, {unix.SOL_TCP, unix.TCP_KEEPINTVL, 5}, {unix.SOL_TCP, unix.TCP_KEEPCNT, 9}, {unix.SOL_TCP, unix.TCP_USER_TIMEOUT, 12345}}},
	{name: "v4 keepalive set then off, timings kept", family: unix.AF_INET,
		opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.SOL_TCP, unix.TCP_KEEPIDLE, 300}, {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0}}},
	{name: "mptcp listener, keepalive custom", family: unix.AF_INET, mptcp: true, listen: true,
		opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.SOL_TCP, unix.TCP_KEEPIDLE, 33}, {unix.SOL_TCP, unix.TCP_KEEPINTVL, 3}, {unix.SOL_TCP, unix.TCP_KEEPCNT, 2}}},
	{name: "mptcp v6 connection, keepalive custom", family: unix.AF_INET6, mptcp: true,
		opts: [][3]int{{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.SOL_TCP, unix.TCP_KEEPIDLE, 44}, {unix.SOL_TCP, unix.TCP_KEEPCNT, 6}}},
	{name: "mptcp connection, defaults", family: unix.AF_INET, mptcp: true},
}

func closeFD(t *testing.T, fd int) { t.Cleanup(func() { unix.Close(fd) }) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeSocket creates the case's socket in the calling thread's namespace
// (options set before listen or connect, as applications do) and returns
// its descriptor; the peer and the listener are closed with the test.
func makeSocket(t *testing.T, c sockCase) int {
	t.Helper()
	proto := unix.IPPROTO_TCP
	if c.mptcp {
		proto = IPProtoMPTCP
	}
	sock := func() int {
		fd, err := unix.Socket(c.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
		must(t, err)
		closeFD(t, fd)
		return fd
	}
	var lo unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if c.family == unix.AF_INET6 {
		lo = &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
	}
	set := func(fd int) {
		if c.v6only {
			must(t, unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1))
		}
		for _, o := range c.opts {
			if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
				t.Fatalf("setsockopt %v: %v", o, err)
			}
		}
	}
	l := sock()
	if c.listen {
		set(l)
	}
	must(t, unix.Bind(l, lo))
	must(t, unix.Listen(l, 8))
	if c.listen {
		return l
	}
	addr, err := unix.Getsockname(l)
	must(t, err)
	fd := sock()
	set(fd)
	must(t, unix.Connect(fd, addr))
	a, _, err := unix.Accept(l)
	must(t, err)
	closeFD(t, a)
	return fd
}

// makeCases makes every case's socket in n, descriptors in case order.
func makeCases(t *testing.T, n *testenv.Netns) []int {
	t.Helper()
	fds := make([]int, len(sockCases))
	must(t, n.Do(func() error {
		for i, c := range sockCases {
			fds[i] = makeSocket(t, c)
		}
		return nil
	}))
	return fds
}

// checkRead compares every socket the reader returns for the cases' inodes
// with getsockopt on the descriptor.
func checkRead(t *testing.T, got []TCPSocket, fds []int) {
	t.Helper()
	byInode := map[uint64][]TCPSocket{}
	for _, s := range got {
		byInode[s.Inode] = append(byInode[s.Inode], s)
	}
	for i, fd := range fds {
		if fd < 0 {
			continue // not this read's to give
		}
		c := sockCases[i]
		want := readOracle(t, fd)
		ss := byInode[inode(t, fd)]
		if len(ss) == 0 {
			t.Errorf("%s: inode %d not read", c.name, inode(t, fd))
			continue
		}
		for _, s := range ss {
			if s.Values != want.Values || s.Protocol != want.protocol || s.V6Only != want.v6only {
				t.Errorf("%s: read %+v protocol %d v6only %v; getsockopt %+v protocol %d v6only %v",
					c.name, s.Values, s.Protocol, s.V6Only, want.Values, want.protocol, want.v6only)
			}
			if s.Local.Port() != want.local.Port() || s.Local.Addr().Unmap() != want.local.Addr().Unmap() {
				t.Errorf("%s: local %v, getsockname %v", c.name, s.Local, want.local)
			}
			wantState := uint8(1) // ESTABLISHED
			if c.listen {
				wantState = 10
			}
			if s.State != wantState {
				t.Errorf("%s: state %d, want %d", c.name, s.State, wantState)
			}
			if !c.mptcp && s.Cookie != want.cookie {
				// An MPTCP subflow has its own cookie.
				t.Errorf("%s: cookie %d, SO_COOKIE %d", c.name, s.Cookie, want.cookie)
			}
			if c.family == unix.AF_INET6 && s.Family != unix.AF_INET6 || c.family == unix.AF_INET && s.Family != unix.AF_INET {
				t.Errorf("%s: family %d", c.name, s.Family)
			}
		}
	}
}

func TestTCPReaderEqualsGetsockopt(t *testing.T) {
	n := testenv.NewNetns(t)
	fds := makeCases(t, n)
	r, err := NewTCPReader()
	must(t, err)
	defer r.Close()
	got, err := r.read(n.Handle, false)
	must(t, err)
	checkRead(t, got, fds)
	// A namespace's own sysctls are what an option never set reads as.
	must(t, n.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/tcp_keepalive_intvl", []byte("21"), 0)
	}))
	got, err = r.read(n.Handle, false)
	must(t, err)
	checkRead(t, got, fds)
	for _, s := range got {
		if s.Inode == inode(t, fds[2]) && s.IntervalS != 21 {
			t.Errorf("after tcp_keepalive_intvl=21 in the namespace: interval %d", s.IntervalS)
		}
	}
	// The host's namespace does not see them.
	host, err := r.read(vns.None(), true)
	must(t, err)
	for _, s := range host {
		for _, fd := range fds {
			if s.Inode == inode(t, fd) {
				t.Errorf("the host namespace's read has inode %d of the test namespace", s.Inode)
			}
		}
	}
}

func TestTCPReaderNoBTF(t *testing.T) {
	old := vmlinuxPath
	vmlinuxPath = "/nonexistent/vmlinux"
	defer func() { vmlinuxPath = old }()
	if _, err := NewTCPReader(); !errors.Is(err, ErrNoBTF) {
		t.Fatalf("got %v, want ErrNoBTF", err)
	}
	if err := ReadAvailable(); !errors.Is(err, ErrNoBTF) {
		t.Fatalf("ReadAvailable: %v, want ErrNoBTF", err)
	}
}

// TestTCPReaderEqualsInetDiag: state, timer, queues, owner and idle clocks
// equal inet_diag's (the time-based ones within the time between the two
// reads), on sockets with unread data, a pending connection on a listener
// and the keepalive timer armed.
func TestTCPReaderEqualsInetDiag(t *testing.T) {
	n := testenv.NewNetns(t)
	fds := make([]int, len(sockCases))
	must(t, n.Do(func() error {
		for i, c := range sockCases {
			fds[i] = makeSocket(t, c)
		}
		// Unread data: the peer of a connection writes 777 bytes.
		l := makeSocket(t, sockCase{family: unix.AF_INET, listen: true})
		addr, err := unix.Getsockname(l)
		must(t, err)
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		must(t, err)
		closeFD(t, c)
		must(t, unix.Connect(c, addr)) // left in l's accept queue
		c2, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		must(t, err)
		closeFD(t, c2)
		must(t, unix.Connect(c2, addr))
		a, _, err := unix.Accept(l)
		must(t, err)
		closeFD(t, a)
		_, err = unix.Write(a, make([]byte, 777))
		return err
	}))
	time.Sleep(50 * time.Millisecond) // idle clocks away from zero
	r, err := NewTCPReader()
	must(t, err)
	defer r.Close()
	got, err := r.read(n.Handle, false)
	must(t, err)
	h, err := netlink.NewHandleAt(n.Handle, unix.NETLINK_INET_DIAG) // without the family it dumps the caller's namespace
	must(t, err)
	defer h.Close()
	diag := map[uint32]*netlink.InetDiagTCPInfoResp{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		rs, err := h.SocketDiagTCPInfo(fam)
		must(t, err)
		for _, d := range rs {
			diag[d.InetDiagMsg.INode] = d
		}
	}
	// A second read after the dump brackets it: a clock inet_diag read
	// lies between the two BPF reads of it, however long the dump took.
	later, err := r.read(n.Handle, false)
	must(t, err)
	then := map[uint64]TCPSocket{}
	for _, s := range later {
		then[s.Inode] = s
	}
	const slack = 20 // ms: jiffies granularity and rounding
	between := func(a, b, d uint32) bool { return min(a, b) <= d+slack && d <= max(a, b)+slack }
	var unread, backlog, timers int
	for _, s := range got {
		d, ok := diag[uint32(s.Inode)]
		if !ok {
			t.Errorf("inode %d: not in inet_diag's dump", s.Inode)
			continue
		}
		m := d.InetDiagMsg
		if s.State != m.State || s.Timer != m.Timer || s.TimerRetrans != m.Retrans || s.RecvQ != m.RQueue || s.SendQ != m.WQueue ||
			s.UID != m.UID || !between(s.TimerExpiresMs, then[s.Inode].TimerExpiresMs, m.Expires) || s.Local.Port() != m.ID.SourcePort || s.Remote.Port() != m.ID.DestinationPort {
			t.Errorf("inode %d: bpf %+v; inet_diag %+v", s.Inode, s, *m)
		}
		if ti := d.TCPInfo; ti != nil && (!between(s.LastDataRecvMs, then[s.Inode].LastDataRecvMs, ti.Last_data_recv) || !between(s.LastAckRecvMs, then[s.Inode].LastAckRecvMs, ti.Last_ack_recv)) {
			t.Errorf("inode %d: idle clocks bpf %d/%d ms, tcp_info %d/%d ms", s.Inode, s.LastDataRecvMs, s.LastAckRecvMs, ti.Last_data_recv, ti.Last_ack_recv)
		}
		if s.RecvQ == 777 && s.State == 1 {
			unread++
		}
		if s.State == 10 && s.RecvQ == 1 {
			backlog++
		}
		if s.Timer == 2 && s.TimerExpiresMs > 0 {
			timers++
		}
	}
	if unread != 1 || backlog != 1 || timers == 0 {
		t.Errorf("the cases did not happen: %d sockets with 777 unread bytes, %d listeners with one pending connection, %d keepalive timers", unread, backlog, timers)
	}
}

// TestTCPReaderManySockets: an output far larger than one read (records
// split between reads) decodes to every socket exactly once.
func TestTCPReaderManySockets(t *testing.T) {
	n := testenv.NewNetns(t)
	const pairs = 700 // 1,400 sockets of 160 bytes: about 3.4 reads of 64 KiB
	want := map[uint64]bool{}
	must(t, n.Do(func() error {
		l := makeSocket(t, sockCase{family: unix.AF_INET, listen: true})
		addr, err := unix.Getsockname(l)
		must(t, err)
		want[inode(t, l)] = true
		for i := 0; i < pairs; i++ {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			must(t, err)
			closeFD(t, c)
			must(t, unix.SetsockoptInt(c, unix.SOL_TCP, unix.TCP_KEEPIDLE, 1+i%300))
			must(t, unix.Connect(c, addr))
			a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
			must(t, err)
			closeFD(t, a)
			want[inode(t, c)], want[inode(t, a)] = true, true
		}
		return nil
	}))
	r, err := NewTCPReader()
	must(t, err)
	defer r.Close()
	// The kernel resumes a walk split over several reads by its position
	// in a hash bucket, which sockets of other namespaces share: churn
	// there (other tests) can make one read miss or repeat a socket, as
	// an inet_diag dump would be interrupted. A complete read must come
	// within a few.
	var bad []string
	for try := 0; try < 3; try++ {
		got, err := r.read(n.Handle, false)
		must(t, err)
		seen := map[uint64]int{}
		for _, s := range got {
			seen[s.Inode]++
		}
		bad = bad[:0]
		for ino := range want {
			if seen[ino] != 1 {
				bad = append(bad, fmt.Sprintf("inode %d read %d times", ino, seen[ino]))
			}
		}
		if len(got) != len(want) {
			bad = append(bad, fmt.Sprintf("%d sockets read, %d in the namespace", len(got), len(want)))
		}
		if len(bad) == 0 {
			return
		}
		t.Logf("read %d: %v", try, bad)
	}
	t.Errorf("no complete read in 3: %v", bad)
}
