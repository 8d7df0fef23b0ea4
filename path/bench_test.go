package path

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/middlebox"
)

// BenchmarkPath: on a lab whose NAT forgets flows after 60 s and drops
// their packets silently (as GCP and Azure do), kadiag's measurement with
// its defaults (10 s – 2 h at ±2 %) beside the fixed schedule of the
// best-known peer (NAT-TCP-test: 130 connections, connection i tested after
// i+1 minutes) on the same lab in the same run. The peer's first tests run
// for real until its answer is fixed; its wall time is its schedule's, 130
// minutes, since it never stops early (and each silent probe would block it
// ~15 min more, waiting for TCP's ETIMEDOUT). Run by scripts/bench/path.sh:
// go test -run '^$' -bench BenchmarkPath -benchtime 1x ./path
func BenchmarkPath(b *testing.B) {
	const T = 60 * time.Second
	for i := 0; i < b.N; i++ {
		c := newChain(b, hop{T, middlebox.Drop})
		c.serve(b, ServeConfig{})
		var (
			wg     sync.WaitGroup
			res    *Result
			err    error
			anchor anchorResult
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			res, err = Measure(context.Background(), Config{Target: net.JoinHostPort(c.server4, "7350"), Dial: dialIn(c.client)})
		}()
		go func() {
			defer wg.Done()
			anchor = runAnchor(c)
		}()
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		short, ok := res.Shortest()
		if !ok {
			b.Fatalf("no timeout measured: %+v", res)
		}
		kErr := (short.Seconds() - T.Seconds()) / T.Seconds()
		aErr := (anchor.mid - T.Seconds()) / T.Seconds()
		fmt.Printf("lab: NAT idle timeout %v, silent drop after expiry\n", T)
		fmt.Printf("kadiag path:        %6.2fs measured (error %+.2f%%), wall %7.1fs = %.3f × T, %d connections, after expiry %s/%s\n",
			short.Seconds(), 100*kErr, res.ElapsedS, res.ElapsedS/T.Seconds(), res.Connections,
			res.Directions.ToClient.AfterExpiry, res.Directions.ToServer.AfterExpiry)
		fmt.Printf("fixed schedule:     %6.2fs measured (error %+.2f%%; bracket [%gs, %gs]), wall %7.1fs = %.1f × T by its schedule (first %d tests run here, %.1fs), 130 connections, RST and drop not told apart\n",
			anchor.mid, 100*aErr, anchor.lo, anchor.hi, 7800.0, 7800/T.Seconds(), anchor.tests, anchor.ran.Seconds())
		fmt.Printf("kadiag: %.0f× less wall time, error %.2f%% vs %.0f%% (goal: within ±2%% in ≤ 1.1 × T)\n",
			7800/res.ElapsedS, 100*math.Abs(kErr), 100*math.Abs(aErr))
		b.ReportMetric(res.ElapsedS/T.Seconds(), "wall/T")
		b.ReportMetric(100*math.Abs(kErr), "err%")
		b.ReportMetric(7800/T.Seconds(), "peer-wall/T")
		b.ReportMetric(100*math.Abs(aErr), "peer-err%")
	}
}

type anchorResult struct {
	lo, hi, mid float64
	tests       int
	ran         time.Duration
}

// runAnchor plays the fixed schedule against the lab's counterpart: 130
// connections opened at once, connection i sends after (i+1) minutes and
// waits for the answer; the first that gets none ends the answer's
// bracket [i, i+1] minutes. (The peer waits for TCP's ETIMEDOUT there; this
// stops at a 2 s deadline, which only shortens the run.)
func runAnchor(c *chain) anchorResult {
	start := time.Now()
	cl := &rawClient{addr: net.JoinHostPort(c.server4, "7350")}
	rawDial := dialIn(c.client)
	open := func(req request) (net.Conn, error) {
		conn, err := rawDial(context.Background(), "tcp", cl.addr)
		if err != nil {
			return nil, err
		}
		g := make([]byte, greetingSize)
		if _, err := io.ReadFull(conn, g); err != nil {
			return nil, err
		}
		req.session = cl.session
		conn.Write(req.marshal("", g[len(magic):]))
		var st [1]byte
		if _, err := io.ReadFull(conn, st[:]); err != nil || st[0] != statusOK {
			return nil, fmt.Errorf("status %q: %v", st[0], err)
		}
		return conn, nil
	}
	ctl, err := open(request{kind: kindControl})
	if err != nil {
		return anchorResult{}
	}
	defer ctl.Close()
	go func() { // keep the control connection (ours, not the peer's) alive
		for range time.Tick(2 * time.Second) {
			if _, err := ctl.Write(frame{typ: framePing}.marshal()); err != nil {
				return
			}
			ctl.Read(make([]byte, frameSize))
		}
	}()
	var conns []net.Conn
	for i := 0; i < 130; i++ {
		conn, err := open(request{kind: kindToServer, conn: uint32(i + 1), bytes: 1, idleMS: uint32((time.Duration(i+1) * time.Minute).Milliseconds())})
		if err != nil {
			break
		}
		conns = append(conns, conn)
	}
	defer func() {
		for _, c := range conns {
			abort(c)
		}
	}()
	t0 := time.Now()
	for i, conn := range conns {
		time.Sleep(time.Until(t0.Add(time.Duration(i+1) * time.Minute)))
		conn.Write([]byte{'x'})
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			return anchorResult{lo: 60 * float64(i), hi: 60 * float64(i+1), mid: 60*float64(i) + 30, tests: i + 1, ran: time.Since(start)}
		}
	}
	return anchorResult{lo: 7800, mid: math.NaN(), tests: len(conns), ran: time.Since(start)}
}
