package path

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary a counterpart process (TestMain), so its
// memory is measured alone.
const helperEnv = "KADIAG_PATH_TEST_SERVE"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		serveHelper(addr)
		return
	}
	os.Exit(m.Run())
}

// serveHelper runs a counterpart on addr; every line on stdin is answered
// with "mem BYTES HELD": the Go heap and stacks in use after a GC, and the
// connections held. EOF on stdin ends it.
func serveHelper(addr string) {
	ln, err := Listen(context.Background(), addr)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s := NewServer(ServeConfig{Token: "t"})
	ctx, cancel := context.WithCancel(context.Background())
	go s.Serve(ctx, ln)
	fmt.Println("ready", ln.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println("mem", ms.HeapInuse+ms.StackInuse, s.Held())
	}
	cancel()
}

// startServer runs an in-process counterpart on loopback.
func startServer(t *testing.T, cfg ServeConfig) (*Server, string) {
	t.Helper()
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// rawClient speaks the protocol by hand from a chosen local address.
type rawClient struct {
	addr, local, token string
	session            [8]byte
}

func newRawClient(addr, local, token string) *rawClient {
	c := &rawClient{addr: addr, local: local, token: token}
	rand.Read(c.session[:])
	return c
}

// open connects and sends req; it returns the connection and the status.
func (c *rawClient) open(req request) (net.Conn, byte, error) {
	d := net.Dialer{KeepAlive: -1, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.local)}}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		return nil, 0, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	g := make([]byte, greetingSize)
	if _, err := io.ReadFull(conn, g); err != nil {
		conn.Close()
		return nil, 0, err
	}
	req.session = c.session
	if _, err := conn.Write(req.marshal(c.token, g[len(magic):])); err != nil {
		conn.Close()
		return nil, 0, err
	}
	var st [1]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil {
		conn.Close()
		return nil, 0, err
	}
	conn.SetDeadline(time.Time{})
	return conn, st[0], nil
}

// TestCounterpartMemory: 2,000 connections held from four client
// addresses (to-server ones wait in a read, to-client ones on a timer):
// the counterpart process's own heap and stacks grow by at most 16 KiB per
// held connection, and the 2,001st connection is refused as full.
func TestCounterpartMemory(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=127.0.0.1:0")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "ready ") {
		t.Fatalf("helper: %q", lines.Text())
	}
	addr := strings.TrimPrefix(lines.Text(), "ready ")
	mem := func() (uint64, int) {
		fmt.Fprintln(stdin, "mem")
		if !lines.Scan() {
			t.Fatal("helper gone")
		}
		f := strings.Fields(lines.Text())
		b, _ := strconv.ParseUint(f[1], 10, 64)
		h, _ := strconv.Atoi(f[2])
		return b, h
	}
	before, _ := mem()
	const clients, per = 4, 500
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < clients; i++ {
		c := newRawClient(addr, fmt.Sprintf("127.0.0.%d", 2+i), "t")
		ctl, st, err := c.open(request{kind: kindControl})
		if err != nil || st != statusOK {
			t.Fatalf("control %d: %v %q", i, err, st)
		}
		conns = append(conns, ctl)
		for j := 1; j < per; j++ {
			k := kindToServer
			if j%2 == 0 {
				k = kindToClient
			}
			conn, st, err := c.open(request{kind: k, conn: uint32(j), bytes: 8, idleMS: 3600_000})
			if err != nil || st != statusOK {
				t.Fatalf("client %d connection %d: %v %q", i, j, err, st)
			}
			conns = append(conns, conn)
		}
	}
	after, held := mem()
	if held != clients*per {
		t.Fatalf("counterpart holds %d connections, want %d", held, clients*per)
	}
	perConn := float64(int64(after)-int64(before)) / float64(held)
	t.Logf("counterpart: %d connections held, %.0f bytes each (heap and stacks)", held, perConn)
	if perConn > 16<<10 {
		t.Errorf("%.0f bytes per held connection, bound 16 KiB", perConn)
	}
	c := newRawClient(addr, "127.0.0.9", "t")
	if conn, st, err := c.open(request{kind: kindControl}); err != nil || st != statusFull {
		t.Errorf("connection 2,001: status %q, err %v; want refused as full", st, err)
	} else {
		conn.Close()
	}
}

// TestCounterpartLimits: the per-source cap and the total.
func TestCounterpartLimits(t *testing.T) {
	s, addr := startServer(t, ServeConfig{MaxConnections: 6, MaxPerSource: 4})
	a := newRawClient(addr, "127.0.0.2", "")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		k := kindToServer
		if i == 0 {
			k = kindControl
		}
		conn, st, err := a.open(request{kind: k, conn: uint32(i), idleMS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		if want := byte(statusOK); i == 4 && st != statusFull || i < 4 && st != want {
			t.Errorf("connection %d from one source: status %q", i, st)
		}
	}
	b := newRawClient(addr, "127.0.0.3", "")
	for i := 0; i < 3; i++ {
		k := kindToServer
		if i == 0 {
			k = kindControl
		}
		conn, st, err := b.open(request{kind: k, conn: uint32(i), idleMS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		if i < 2 && st != statusOK || i == 2 && st != statusFull {
			t.Errorf("connection %d from a second source: status %q (total limit 6)", i, st)
		}
	}
	// A test connection of a session that has no control connection.
	c := newRawClient(addr, "127.0.0.4", "")
	if s.Held() < 6 {
		t.Errorf("held %d, want 6", s.Held())
	}
	for _, conn := range conns {
		conn.Close()
	}
	conns = nil
	waitFor(t, func() bool { return s.Held() == 0 })
	if conn, st, err := c.open(request{kind: kindToServer, conn: 1}); err != nil || st != statusNoSession {
		t.Errorf("test connection without a session: %q %v", st, err)
	} else {
		conn.Close()
	}
	if conn, st, err := c.open(request{kind: kindToClient, idleMS: uint32((7 * time.Hour).Milliseconds())}); err != nil || st != statusTooLong {
		t.Errorf("idle above --max-hold: %q %v", st, err)
	} else {
		conn.Close()
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTokenRefused: a client without the token, or with another, is
// refused, and the counterpart logs it.
func TestTokenRefused(t *testing.T) {
	logs := make(chan Measurement, 4)
	_, addr := startServer(t, ServeConfig{Token: "s3cret", Log: func(m Measurement) { logs <- m }})
	for _, tok := range []string{"", "wrong"} {
		_, err := Measure(context.Background(), Config{Target: addr, Token: tok, Min: time.Second, Max: 2 * time.Second})
		if !errors.Is(err, ErrRefused) {
			t.Errorf("token %q: %v, want ErrRefused", tok, err)
		}
		if m := <-logs; m.Refused == "" {
			t.Errorf("refusal not logged: %+v", m)
		}
	}
}

// TestGarbage: bytes that are not the protocol get a clean close (FIN, no
// RST, whatever was sent read first), and the counterpart keeps serving: a
// measurement over loopback afterwards finds no expiry up to --max.
func TestGarbage(t *testing.T) {
	s, addr := startServer(t, ServeConfig{Token: "k"})
	for _, garbage := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("x", 64)),
		randomBytes(200_000),
		[]byte("KADIAGP1 but short"),
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		go func() {
			conn.Write(garbage)
			conn.(*net.TCPConn).CloseWrite()
		}()
		_, err = io.Copy(io.Discard, conn)
		if err != nil {
			t.Errorf("%d bytes of garbage: %v, want a clean close (EOF)", len(garbage), err)
		}
		if errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("garbage answered with an RST")
		}
		conn.Close()
	}
	waitFor(t, func() bool { return s.Held() == 0 })
	res, err := Measure(context.Background(), Config{Target: addr, Token: "k", Min: time.Second, Max: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*DirectionResult{res.Directions.ToClient, res.Directions.ToServer} {
		if d == nil || d.IdleTimeoutS != nil || d.AfterExpiry != AfterNone || *d.BracketS[0] < 1.9 {
			t.Errorf("loopback keeps flows: got %+v", d)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
