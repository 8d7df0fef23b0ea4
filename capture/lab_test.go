package capture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The lab: a client and a server namespace joined by a veth pair (plus a
// VLAN on top of it), real TCP connections with real keepalive settings, and
// captures of the same traffic by tcpdump and by kadiag's live capture.

// Ports of the scenarios, one flow each.
const (
	portKeepalive   = 8081 // client keepalive 1s/1s, answered
	portNoKeepalive = 8082 // keepalive off: silence
	portLost        = 8083 // client keepalive, server's packets dropped: probes unanswered, then RST
	portZeroWindow  = 8084 // server stops reading: zero window probes
	portRetransmit  = 8085 // client's data dropped for a while: retransmissions
	portIPv6        = 8086 // client keepalive over IPv6
	portVLAN        = 8087 // client keepalive over an 802.1Q VLAN
	portServerKA    = 8088 // server keepalive on the accepted socket
)

// labCaptures are the files one lab run leaves behind.
type labCaptures struct {
	dir      string
	eth      string // tcpdump -i veth (Ethernet, VLAN tags kept), microseconds
	nano     string // tcpdump -i veth --time-stamp-precision=nano
	any      string // tcpdump -i any: Linux SLL2
	live     string // kadiag live capture --write (pcapng)
	liveRes  *Result
	liveErr  error
	clientIf string
	vlan     bool // the kernel could make a VLAN link: the VLAN flow ran
}

var (
	labOnce sync.Once
	labCap  *labCaptures
	labErr  string
)

// runLab runs every scenario once per test binary and returns the captures.
func runLab(t *testing.T) *labCaptures {
	t.Helper()
	testenv.Privileged(t)
	testenv.Need(t, "tcpdump", "nft", "nsenter")
	labOnce.Do(func() {
		labCap = &labCaptures{}
		// The namespaces must outlive one test: a helper test object would
		// clean them up at its end, so the lab cleans up itself.
		lt := &labT{T: t}
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(labAbort); !ok {
					panic(p)
				}
			}
			lt.cleanup()
			labErr = lt.failed
		}()
		runLabOnce(lt, labCap)
	})
	if labErr != "" {
		t.Fatalf("lab: %s", labErr)
	}
	return labCap
}

// labT lets testenv helpers run once for the whole package: failures are
// recorded, cleanups run when the lab is done.
type labT struct {
	*testing.T
	mu       sync.Mutex
	cleanups []func()
	failed   string
}

func (l *labT) Cleanup(f func()) { l.mu.Lock(); l.cleanups = append(l.cleanups, f); l.mu.Unlock() }
func (l *labT) Fatalf(format string, a ...any) {
	l.mu.Lock()
	l.failed = fmt.Sprintf(format, a...)
	l.mu.Unlock()
	panic(labAbort{})
}

type labAbort struct{}

func (l *labT) Errorf(format string, a ...any) {
	l.mu.Lock()
	l.failed = fmt.Sprintf(format, a...)
	l.mu.Unlock()
}
func (l *labT) cleanup() {
	for i := len(l.cleanups) - 1; i >= 0; i-- {
		l.cleanups[i]()
	}
}

func runLabOnce(t *labT, lc *labCaptures) {
	dir, err := os.MkdirTemp("", "kadiag-capture-lab-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	lc.dir = dir
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, client, server, 61)
	lc.clientIf = link.AName
	vlanA, vlanB, vlanErr := addVLAN(t, client, server, link, 62)
	lc.vlan = vlanErr == nil
	if vlanErr != nil {
		// Kernels without 8021q (this project's build machine) cannot make a
		// VLAN link; the VLAN decoding is then covered by re-tagging the
		// captured frames (see TestVLANRetagged).
		t.Logf("no VLAN link in the lab: %v", vlanErr)
	}

	lc.eth = filepath.Join(dir, "eth.pcap")
	lc.nano = filepath.Join(dir, "nano.pcap")
	lc.any = filepath.Join(dir, "any.pcap")
	lc.live = filepath.Join(dir, "live.pcapng")
	ring := tcpdumpRing
	stops := []func(){
		startTcpdump(t, client, append(ring, "-i", link.AName, "-w", lc.eth)...),
		startTcpdump(t, client, append(ring, "-i", link.AName, "--time-stamp-precision=nano", "-w", lc.nano)...),
		startTcpdump(t, client, append(ring, "-i", "any", "-w", lc.any)...),
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		lc.liveRes, lc.liveErr = Live(ctx, LiveOptions{Netns: client.Path, Iface: link.AName, Write: lc.live,
			Ready: func() { close(ready) }}, Options{})
	}()
	select {
	case <-ready:
	case <-liveDone:
		t.Fatalf("live capture: %v", lc.liveErr)
	}

	// tcpdump -i any reports "listening" a moment before its socket sees
	// every packet (seen here: the first data segments went missing).
	time.Sleep(500 * time.Millisecond)

	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Errorf("scenario %s: %v", name, err)
			}
		}()
	}
	ka := net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 5}
	noKA := net.KeepAliveConfig{Enable: false}
	run("keepalive", func() error {
		return idleConn(client, server, link.A4, link.B4, portKeepalive, ka, noKA, 3500*time.Millisecond)
	})
	run("no keepalive", func() error {
		return idleConn(client, server, link.A4, link.B4, portNoKeepalive, noKA, noKA, 3500*time.Millisecond)
	})
	run("ipv6", func() error {
		return idleConn(client, server, link.A6, link.B6, portIPv6, ka, noKA, 3500*time.Millisecond)
	})
	if lc.vlan {
		run("vlan", func() error {
			return idleConn(client, server, vlanA, vlanB, portVLAN, ka, noKA, 3500*time.Millisecond)
		})
	}
	run("server keepalive", func() error {
		return idleConn(client, server, link.A4, link.B4, portServerKA, noKA, ka, 3500*time.Millisecond)
	})
	run("lost probes", func() error { return lostProbes(client, server, link.A4, link.B4) })
	run("zero window", func() error { return zeroWindow(client, server, link.A4, link.B4) })
	run("retransmit", func() error { return retransmit(client, server, link.A4, link.B4) })
	wg.Wait()

	// Let the last ACKs reach every capture before stopping them.
	time.Sleep(300 * time.Millisecond)
	for _, stop := range stops {
		stop()
	}
	cancel()
	<-liveDone
	if lc.liveErr != nil {
		t.Fatalf("live capture: %v", lc.liveErr)
	}
}

// addVLAN puts VLAN 42 on both ends of the veth with 198.18.<subnet>.0/24.
func addVLAN(t testing.TB, a, b *testenv.Netns, l testenv.Link, subnet int) (string, string, error) {
	add := func(ns *testenv.Netns, parent, addr string) error {
		h := ns.Netlink(t)
		p, err := h.LinkByName(parent)
		if err != nil {
			return err
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: parent + ".42", ParentIndex: p.Attrs().Index}, VlanId: 42}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("vlan on %s: %w", parent, err)
		}
		ad, _ := netlink.ParseAddr(addr + "/24")
		if err := h.AddrAdd(v, ad); err != nil {
			return err
		}
		return h.LinkSetUp(v)
	}
	va, vb := fmt.Sprintf("198.18.%d.1", subnet), fmt.Sprintf("198.18.%d.2", subnet)
	if err := add(a, l.AName, va); err != nil {
		return "", "", err
	}
	return va, vb, add(b, l.BName, vb)
}

// tcpdumpRing sizes the lab's tcpdump captures. tcpdump's default ring
// holds only 32 packets on a veth: with --immediate-mode libpcap uses
// TPACKET_V2, whose fixed frames it sizes for the 64 KiB segments GSO lets
// through, in 2 MiB. The lab's first burst (eight handshakes at once)
// overflowed it when tcpdump lost the CPU for a moment (seen: the first
// packets of two flows missing). 512 bytes keep every header; 16 MiB hold
// tens of thousands of such frames (TestTcpdumpRingHoldsBurst).
var tcpdumpRing = []string{"-s", "512", "-B", "16384"}

// startTcpdump runs tcpdump inside ns until the returned stop is called; it
// returns once tcpdump listens. stop fails the test when the kernel dropped
// packets of the capture.
func startTcpdump(t testing.TB, ns *testenv.Netns, args ...string) func() {
	p := runTcpdump(t, ns, args...)
	return func() {
		stats := p.stop()
		// A capture that lost packets would make every comparison with it
		// fail for a reason that is not kadiag's: say so instead.
		if n, ok := kernelDrops(stats); !ok || n != 0 {
			t.Errorf("tcpdump %v: the kernel dropped %d packets of its capture (stats found: %v): %s", args, n, ok, stats)
		}
	}
}

// tcpdump is a running tcpdump.
type tcpdump struct {
	cmd  *exec.Cmd
	args []string
	tail bytes.Buffer
	done chan struct{}
}

// runTcpdump starts tcpdump inside ns and returns once it listens.
func runTcpdump(t testing.TB, ns *testenv.Netns, args ...string) *tcpdump {
	p := &tcpdump{args: args, done: make(chan struct{})}
	p.cmd = ns.Command("tcpdump", append([]string{"--immediate-mode", "-U", "-n", "tcp"}, args...)...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "listening on") {
			break
		}
	}
	go func() { io.Copy(&p.tail, stderr); close(p.done) }()
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "listening on") {
		t.Fatalf("tcpdump %v did not start: %s", args, strings.Join(lines, "; "))
	}
	return p
}

// stop ends tcpdump and returns what it printed after listening (its
// statistics).
func (p *tcpdump) stop() string {
	p.cmd.Process.Signal(syscall.SIGINT)
	<-p.done
	p.cmd.Wait()
	if os.Getenv("KADIAG_LAB_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "tcpdump %v: %s\n", p.args, p.tail.String())
	}
	return p.tail.String()
}

// kernelDrops reads "N packets dropped by kernel" from tcpdump's exit stats.
func kernelDrops(stderr string) (int, bool) {
	for _, line := range strings.Split(stderr, "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "%d packets dropped by kernel", &n); err == nil {
			return n, true
		}
	}
	return 0, false
}

// listen opens a listener inside ns; rcvbuf > 0 shrinks the receive buffer
// that accepted sockets inherit.
func listen(ns *testenv.Netns, addr string, port, rcvbuf int) (net.Listener, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
			if rcvbuf == 0 {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf) })
			if err != nil {
				return err
			}
			return serr
		}}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	})
	return ln, err
}

// dial connects from inside ns with the given keepalive settings; Go sets
// them with setsockopt (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
// TCP_KEEPCNT) on the real socket.
func dial(ns *testenv.Netns, local, remote string, port int, ka net.KeepAliveConfig) (*net.TCPConn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{KeepAliveConfig: ka, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		if !ka.Enable {
			d.KeepAlive = -1
		}
		var err error
		c, err = d.Dial("tcp", net.JoinHostPort(remote, fmt.Sprint(port)))
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func accept(ln net.Listener, ka net.KeepAliveConfig) (*net.TCPConn, error) {
	c, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	if err := tc.SetKeepAliveConfig(ka); err != nil {
		return nil, err
	}
	return tc, nil
}

// connPair listens in server, dials from client and accepts: the two ends
// of one TCP connection with their keepalive settings. done closes both
// ends and the listener.
func connPair(client, server *testenv.Netns, caddr, saddr string, port, rcvbuf int, cka, ska net.KeepAliveConfig) (c, s *net.TCPConn, done func(), err error) {
	ln, err := listen(server, saddr, port, rcvbuf)
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	if c, err = dial(client, caddr, saddr, port, cka); err != nil {
		return nil, nil, nil, err
	}
	if s, err = accept(ln, ska); err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return c, s, func() { c.Close(); s.Close() }, nil
}

// idleConn: request, response, then idle, then the client closes.
func idleConn(client, server *testenv.Netns, caddr, saddr string, port int, cka, ska net.KeepAliveConfig, idle time.Duration) error {
	c, s, done, err := connPair(client, server, caddr, saddr, port, 0, cka, ska)
	if err != nil {
		return err
	}
	defer done()
	if err := exchange(c, s); err != nil {
		return err
	}
	time.Sleep(idle)
	return nil
}

// exchange sends a 100-byte request and a 200-byte response.
func exchange(c, s *net.TCPConn) error {
	if _, err := c.Write(make([]byte, 100)); err != nil {
		return err
	}
	if _, err := io.ReadFull(s, make([]byte, 100)); err != nil {
		return err
	}
	if _, err := s.Write(make([]byte, 200)); err != nil {
		return err
	}
	_, err := io.ReadFull(c, make([]byte, 200))
	return err
}

func nft(ns *testenv.Netns, script string) error {
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}

// lostProbes: after the exchange the server's packets are dropped on their
// way out, so the client's probes go unanswered until it gives up with RST.
func lostProbes(client, server *testenv.Netns, caddr, saddr string) error {
	c, s, done, err := connPair(client, server, caddr, saddr, portLost, 0, net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 2}, net.KeepAliveConfig{Enable: false})
	if err != nil {
		return err
	}
	defer done()
	if err := exchange(c, s); err != nil {
		return err
	}
	if err := nft(server, fmt.Sprintf("table inet kadiag_lost {\n chain out { type filter hook output priority 0; tcp sport %d drop; }\n}\n", portLost)); err != nil {
		return err
	}
	// Probes at 1 s and 2 s, unanswered: the kernel gives up at 3 s.
	c.SetReadDeadline(time.Now().Add(6 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil {
		return fmt.Errorf("read succeeded on a connection whose peer is cut off")
	}
	return nft(server, "delete table inet kadiag_lost\n")
}

// zeroWindow: the server never reads, the client keeps writing; once the
// server's window is zero the client's kernel sends zero window probes.
func zeroWindow(client, server *testenv.Netns, caddr, saddr string) error {
	c, _, done, err := connPair(client, server, caddr, saddr, portZeroWindow, 4096, net.KeepAliveConfig{Enable: false}, net.KeepAliveConfig{Enable: false})
	if err != nil {
		return err
	}
	defer done()
	c.SetWriteDeadline(time.Now().Add(3500 * time.Millisecond))
	buf := make([]byte, 1<<16)
	for {
		if _, err := c.Write(buf); err != nil {
			break // the deadline: the window stayed shut
		}
	}
	return nil
}

// retransmit: the client's data is dropped on arrival for a second, so its
// kernel retransmits; then the path heals.
func retransmit(client, server *testenv.Netns, caddr, saddr string) error {
	c, s, done, err := connPair(client, server, caddr, saddr, portRetransmit, 0, net.KeepAliveConfig{Enable: false}, net.KeepAliveConfig{Enable: false})
	if err != nil {
		return err
	}
	defer done()
	if err := exchange(c, s); err != nil {
		return err
	}
	if err := nft(server, fmt.Sprintf("table inet kadiag_retx {\n chain in { type filter hook input priority 0; tcp dport %d drop; }\n}\n", portRetransmit)); err != nil {
		return err
	}
	if _, err := c.Write(make([]byte, 300)); err != nil {
		return err
	}
	time.Sleep(1200 * time.Millisecond)
	if err := nft(server, "delete table inet kadiag_retx\n"); err != nil {
		return err
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(s, make([]byte, 300))
	return err
}

// TestTcpdumpRingHoldsBurst: tcpdump with the lab's ring, stopped while 40
// connections open and exchange data across a veth (as a busy machine
// deschedules it), loses none of their packets.
func TestTcpdumpRingHoldsBurst(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "tcpdump", "nsenter")
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, client, server, 65)
	ln, err := listen(server, link.B4, 9000, 0)
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
			io.ReadFull(c, make([]byte, 100))
			c.Write(make([]byte, 200))
			c.Close()
		}
	}()
	td := runTcpdump(t, client, append(tcpdumpRing, "-i", link.AName, "-w", filepath.Join(t.TempDir(), "burst.pcap"))...)
	pid := td.cmd.Process.Pid // nsenter execs tcpdump: the same process
	syscall.Kill(pid, syscall.SIGSTOP)
	for i := 0; i < 40; i++ {
		c, err := dial(client, link.A4, link.B4, 9000, net.KeepAliveConfig{Enable: false})
		if err != nil {
			syscall.Kill(pid, syscall.SIGCONT)
			t.Fatal(err)
		}
		c.Write(make([]byte, 100))
		io.ReadFull(c, make([]byte, 200))
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGCONT)
	time.Sleep(200 * time.Millisecond)
	if stats := td.stop(); !strings.Contains(stats, "\n0 packets dropped by kernel") {
		t.Errorf("tcpdump %v lost packets while stopped: %s", tcpdumpRing, stats)
	}
}
