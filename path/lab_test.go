package path

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	vns "github.com/vishvananda/netns"
)

// listenIn opens a listener inside ns.
func listenIn(t testing.TB, ns vns.NsHandle, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := knetns.Do(ns, func() error {
		var err error
		ln, err = Listen(context.Background(), addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialIn returns a Dial that opens its sockets inside ns.
func dialIn(ns vns.NsHandle) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := knetns.Do(ns, func() error {
			d := net.Dialer{KeepAlive: -1, Timeout: 10 * time.Second}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// serve runs a counterpart in the chain's server namespace.
func (c *chain) serve(t testing.TB, cfg ServeConfig) *Server {
	t.Helper()
	ln := listenIn(t, c.server, ":7350")
	s := NewServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// measure runs a measurement from the chain's client to port 7350 of its
// server.
func (c *chain) measure(t *testing.T, cfg Config, ipv6 bool) *Result {
	t.Helper()
	host := c.server4
	if ipv6 {
		host, cfg.Network = c.server6, "tcp6"
	}
	cfg.Target = net.JoinHostPort(host, "7350")
	cfg.Dial = dialIn(c.client)
	res, err := Measure(context.Background(), cfg)
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := jsonIndent(res)
			t.Logf("the measurement: %s", b)
		}
	})
	return res
}

// sideBySide runs the cases at once: each waits out a real idle timeout, so
// the total is the longest, not the sum (t.Parallel would run only
// GOMAXPROCS of them at a time).
func sideBySide(t *testing.T, cases map[string]func(t *testing.T)) {
	var wg sync.WaitGroup
	for name, f := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f)
		}()
	}
	wg.Wait()
}

// near checks a measured timeout against the lab's configured one: within
// ±2 % or ±1 s, whichever is larger.
func near(t *testing.T, what string, got *float64, want time.Duration) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no timeout measured, want %v", what, want)
		return
	}
	tol := max(0.02*want.Seconds(), 1)
	if d := *got - want.Seconds(); d > tol || d < -tol {
		t.Errorf("%s: measured %.3fs, configured %v (tolerance ±%.2fs)", what, *got, want, tol)
	}
}

// TestLabs runs every lab side by side (about 100 s in all).
//
// timeout-*: labs of 12 s, 40 s and 90 s, each resetting, dropping and
// healing after expiry. Ground truth is the lab's conntrack timeout; after
// expiry, per direction, is what its ruleset does: the inside host's
// packets are RST (reset), dropped (drop) or re-create the flow (heal), the
// outside peer's are always dropped.
func TestLabs(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3")
	cases := map[string]func(t *testing.T){}
	type want struct{ toClient, toServer string }
	wants := map[middlebox.AfterExpiry]want{
		middlebox.Reset: {AfterDrop, AfterReset},
		middlebox.Drop:  {AfterDrop, AfterDrop},
		middlebox.Heal:  {AfterDrop, AfterHeal},
	}
	for _, idle := range []time.Duration{12 * time.Second, 40 * time.Second, 90 * time.Second} {
		for _, after := range []middlebox.AfterExpiry{middlebox.Reset, middlebox.Drop, middlebox.Heal} {
			cases[fmt.Sprintf("timeout-%v-%s", idle, after)] = func(t *testing.T) {
				c := newChain(t, hop{idle, after})
				c.serve(t, ServeConfig{Token: "s3cret"})
				res := c.measure(t, Config{Token: "s3cret", Min: 5 * time.Second, Max: 150 * time.Second}, false)
				w := wants[after]
				tc, ts := res.Directions.ToClient, res.Directions.ToServer
				if tc == nil || ts == nil || !res.Counterpart || !res.Complete {
					t.Fatalf("result incomplete: %+v", res)
				}
				near(t, "to-client", tc.IdleTimeoutS, idle)
				if tc.AfterExpiry != w.toClient || ts.AfterExpiry != w.toServer {
					t.Errorf("after expiry: to-client %s, to-server %s; want %s, %s", tc.AfterExpiry, ts.AfterExpiry, w.toClient, w.toServer)
				}
				if after == middlebox.Heal {
					if ts.IdleTimeoutS != nil || ts.BracketS[1] != nil || *ts.BracketS[0] < idle.Seconds() {
						t.Errorf("to-server heals: want no timeout and survival past %v, got %v %v", idle, ts.IdleTimeoutS, ts.BracketS)
					}
					if !hasSummary(res, "asymmetry: the middlebox re-creates") {
						t.Errorf("the heal asymmetry is not said in words: %q", res.Summary)
					}
				} else {
					near(t, "to-server", ts.IdleTimeoutS, idle)
				}
				if after == middlebox.Reset && ts.ResetBy != ByClient {
					t.Errorf("to-server reset seen by %q, want the client", ts.ResetBy)
				}
				logResult(t, idle, res)
			}
		}
	}
	// The flow is forgotten by whichever hop forgets first.
	cases["two-hop"] = func(t *testing.T) {
		c := newChain(t, hop{20 * time.Second, middlebox.Reset}, hop{9 * time.Second, middlebox.Drop})
		c.serve(t, ServeConfig{})
		res := c.measure(t, Config{Min: 3 * time.Second, Max: 40 * time.Second}, false)
		near(t, "to-client", res.Directions.ToClient.IdleTimeoutS, 9*time.Second)
		near(t, "to-server", res.Directions.ToServer.IdleTimeoutS, 9*time.Second)
		if a := res.Directions.ToServer.AfterExpiry; a != AfterDrop {
			t.Errorf("to-server after expiry %s: the shorter hop drops", a)
		}
		logResult(t, 9*time.Second, res)
	}
	cases["ipv6"] = func(t *testing.T) {
		c := newChain(t, hop{8 * time.Second, middlebox.Reset})
		c.serve(t, ServeConfig{Token: "v6"})
		res := c.measure(t, Config{Token: "v6", Min: 3 * time.Second, Max: 30 * time.Second}, true)
		if !strings.HasPrefix(res.Target, "[fd00:6b61:") {
			t.Errorf("target %s is not the lab's IPv6 server", res.Target)
		}
		near(t, "to-client", res.Directions.ToClient.IdleTimeoutS, 8*time.Second)
		near(t, "to-server", res.Directions.ToServer.IdleTimeoutS, 8*time.Second)
		if a := res.Directions.ToServer.AfterExpiry; a != AfterReset {
			t.Errorf("to-server after expiry %s, want reset", a)
		}
		logResult(t, 8*time.Second, res)
	}
	for _, k := range []struct {
		name        string
		idle, every time.Duration
		kept        bool
	}{{"keepalive-below", 10 * time.Second, 3 * time.Second, true}, {"keepalive-above", 8 * time.Second, 12 * time.Second, false}} {
		cases[k.name] = func(t *testing.T) {
			c := newChain(t, hop{k.idle, middlebox.Drop})
			c.serve(t, ServeConfig{})
			res := c.measure(t, Config{Min: 3 * time.Second, Max: 30 * time.Second, Keepalive: k.every}, false)
			near(t, "to-client", res.Directions.ToClient.IdleTimeoutS, k.idle)
			if res.Keepalive == nil || res.Keepalive.KeptAlive != k.kept || len(res.Keepalive.Tests) != 2 {
				t.Errorf("keepalive every %v with a %v timeout: got %+v, want kept alive %v", k.every, k.idle, res.Keepalive, k.kept)
			}
			logResult(t, k.idle, res)
		}
	}
	// The path breaks mid-measurement: the control connection, never idle,
	// says so; no timeout is reported.
	cases["path-cut"] = func(t *testing.T) {
		c := newChain(t, hop{30 * time.Second, middlebox.Drop})
		c.serve(t, ServeConfig{})
		time.AfterFunc(6*time.Second, func() { c.cut(t, 0) })
		res, err := Measure(context.Background(), Config{Target: net.JoinHostPort(c.server4, "7350"), Dial: dialIn(c.client), Min: 3 * time.Second, Max: 60 * time.Second})
		if !errors.Is(err, ErrPathFailed) || res == nil || res.PathFailed == "" || res.Complete {
			t.Fatalf("a cut path: %v, %+v", err, res)
		}
		if _, ok := res.Shortest(); ok || res.AtLeast() < 3 {
			b, _ := jsonIndent(res)
			t.Errorf("a cut path is no idle timeout: %s", b)
		}
		t.Logf("cut at 6s: %v after %.1fs, at least %.1fs known", err, res.ElapsedS, res.AtLeast())
	}
	// A real HTTP server, no counterpart: to-server only.
	cases["plain-http"] = func(t *testing.T) {
		c := newChain(t, hop{8 * time.Second, middlebox.Reset})
		srv := command(c.server, "python3", "-m", "http.server", "--bind", c.server4, "7350")
		startPlain(t, c, srv)
		res := c.measure(t, Config{Min: 3 * time.Second, Max: 30 * time.Second}, false)
		if res.Counterpart || res.Directions.ToClient != nil || res.Directions.ToServer == nil {
			t.Fatalf("want to-server only without a counterpart: %+v", res)
		}
		near(t, "to-server", res.Directions.ToServer.IdleTimeoutS, 8*time.Second)
		if a := res.Directions.ToServer.AfterExpiry; a != AfterReset {
			t.Errorf("to-server after expiry %s, want reset", a)
		}
		if !hasSummary(res, "no counterpart") || res.ServerIdleCloseS != nil {
			t.Errorf("summary %q, server idle close %v", res.Summary, res.ServerIdleCloseS)
		}
		logResult(t, 8*time.Second, res)
	}
	// A server that closes idle connections after 6 s, behind a 30 s hop:
	// its own limit is the finding.
	cases["plain-idle-close"] = func(t *testing.T) {
		c := newChain(t, hop{30 * time.Second, middlebox.Drop})
		wd, _ := os.Getwd()
		srv := command(c.server, "python3", filepath.Join(wd, "testdata/idle_server.py"), c.server4, "7350", "6")
		startPlain(t, c, srv)
		res := c.measure(t, Config{Min: 2 * time.Second, Max: 60 * time.Second}, false)
		ts := res.Directions.ToServer
		if res.Counterpart || ts == nil || ts.BracketS[1] != nil || ts.IdleTimeoutS != nil {
			t.Fatalf("want to-server only, unbracketed: %+v", res)
		}
		near(t, "server idle close", res.ServerIdleCloseS, 6*time.Second)
		// Survivals reach up to the server's close (Python's timer, on a
		// busy host, may fire a little late), not beyond.
		if c := res.ServerIdleCloseS; c != nil && (*ts.BracketS[0] > *c || *ts.BracketS[0] < *c-1) {
			t.Errorf("to-server survived up to %v, want just below the server's close at %v", *ts.BracketS[0], *c)
		}
		logResult(t, 30*time.Second, res)
	}
	sideBySide(t, cases)
}

// startPlain starts a plain server in the chain's server namespace and
// waits until it accepts on port 7350.
func startPlain(t *testing.T, c *chain, cmd *exec.Cmd) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	dial := dialIn(c.server)
	if !testenv.WaitUntil(10*time.Second, func() bool {
		conn, err := dial(context.Background(), "tcp", net.JoinHostPort(c.server4, "7350"))
		if err == nil {
			conn.Close()
		}
		return err == nil
	}) {
		t.Fatal("plain server not listening")
	}
}

func hasSummary(res *Result, prefix string) bool {
	for _, s := range res.Summary {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// logResult reports the figures, wall time among them: it belongs to the
// benchmark, not to an assertion.
func logResult(t *testing.T, idle time.Duration, res *Result) {
	if d := os.Getenv("KADIAG_PATH_DUMP"); d != "" {
		b, _ := jsonIndent(res)
		os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+".json"), b, 0o644)
	}
	var parts []string
	for _, d := range []struct {
		n  string
		dr *DirectionResult
	}{{"to-client", res.Directions.ToClient}, {"to-server", res.Directions.ToServer}} {
		if d.dr != nil {
			parts = append(parts, fmt.Sprintf("%s %s %s", d.n, ptrS(d.dr.IdleTimeoutS), d.dr.AfterExpiry))
		}
	}
	t.Logf("configured %v: %s; wall %.1fs = %.3f×T; %d connections, deadline %.3fs; %q",
		idle, strings.Join(parts, ", "), res.ElapsedS, res.ElapsedS/idle.Seconds(), res.Connections, res.DeadlineS, res.Summary)
}

func ptrS(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprintf("%.3fs", *v)
}
