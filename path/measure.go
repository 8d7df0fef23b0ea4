package path

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// test is one connection's test.
type test struct {
	id        uint32
	dir       Direction
	idle      time.Duration // planned
	keepalive bool
	conn      net.Conn
	lastPkt   time.Time
	timer     *time.Timer

	resetNote atomic.Bool // the counterpart saw an RST
	gotNote   atomic.Bool // the counterpart got the to-server bytes
	noted     atomic.Bool // the counterpart's send note arrived
	once      sync.Once

	// Set once, before the test is sent on run.done (or when cancelled).
	finished   bool
	cancelled  bool
	finishedAt int64 // ns since the run's start
	// A loss is tentative until a ping sent after it is answered; then its
	// connection is checked once more (confirmed) and closed. Bytes that
	// arrived meanwhile make it a late delivery: the hosts were slow, the
	// flow was alive.
	confirmed bool
	late      bool
	acked0    uint64    // to-server: bytes acknowledged before the test's write
	probeAt   time.Time // plain: when the keepalive probe went out
	outcome   string
	by        string
	measured  time.Duration
}

// point is one grid idle of one direction.
type point struct {
	idle  time.Duration
	tests []*test
}

type pointState int

const (
	pending pointState = iota
	survived
	died
	closed
)

// state: survived if any test delivered (an early eviction of another is
// not the timeout), died when all are over, none delivered, and the path
// was seen working after the last of them (pathOK, ns since start).
func (p *point) state(pathOK int64) pointState {
	allClosed, anyPending := true, false
	for _, t := range p.tests {
		switch {
		case t.finished && t.outcome == Delivered:
			return survived
		case !t.finished && !t.cancelled, t.finished && (t.finishedAt > pathOK || !t.confirmed):
			anyPending = true
		}
		if !t.finished || t.outcome != Closed {
			allClosed = false
		}
	}
	switch {
	case anyPending:
		return pending
	case allClosed:
		return closed
	}
	return died
}

// dirState is what is known of one direction.
type dirState struct {
	dir     Direction
	points  []*point
	decided bool
	upper   int // index of the first point that died; -1 none
	heal    bool
	closed  bool // the server closed idle connections first
}

// run is one measurement.
type run struct {
	cfg         Config
	start       time.Time
	counterpart bool
	deadline    time.Duration
	rtt         time.Duration
	session     [8]byte

	ctl      net.Conn
	ctlMu    sync.Mutex
	lastPong atomic.Int64 // ns since start
	// pathOK is the send time (ns since start) of the latest ping that was
	// answered: the path worked after it. A lost test counts only once a
	// ping sent after it came back, so a path that broke is never taken
	// for an expiry.
	pathOK  atomic.Int64
	pingNow chan struct{}
	wake    chan struct{}

	mu      sync.Mutex
	byID    map[uint32]*test
	dirs    []*dirState
	ka      []*test
	kaFired bool
	nextID  uint32
	conns   int

	done   chan *test
	failed chan error
}

// Measure runs one measurement against cfg.Target until every direction is
// bracketed, --max is reached, or ctx ends. An interrupted measurement
// returns what is known (Result.Complete false) and ctx's error.
func Measure(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, start: time.Now(), byID: map[uint32]*test{}, failed: make(chan error, 4),
		pingNow: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
	rand.Read(r.session[:])
	ctl, greeting, err := r.dialGreet(ctx)
	if err != nil {
		return nil, err
	}
	r.conns++
	if greeting == nil {
		ctl.Close()
		if !cfg.wants(ToServer) {
			return nil, fmt.Errorf("%w: %s did not greet as a kadiag counterpart, and without one only to-server can be measured: run `kadiag path serve` there", ErrBadConfig, cfg.Target)
		}
		return r.plain(ctx)
	}
	r.counterpart = true
	r.ctl = ctl
	defer abort(ctl)
	if err := r.handshake(ctl, greeting, request{kind: kindControl, session: r.session}); err != nil {
		return nil, err
	}
	if err := r.measureRTT(); err != nil {
		return nil, err
	}
	r.plan()
	r.done = make(chan *test, len(r.byID))
	go r.readControl()
	go r.pinger(ctx)
	if err := r.openAll(ctx); err != nil {
		r.cancelAll()
		return nil, err
	}
	return r.loop(ctx)
}

// dialGreet dials and waits for the counterpart's greeting; a nil greeting
// means the far side is a plain server (silent or another protocol).
func (r *run) dialGreet(ctx context.Context) (net.Conn, []byte, error) {
	c, err := r.cfg.Dial(ctx, r.cfg.Network, r.cfg.Target)
	if err != nil {
		return nil, nil, err
	}
	c.SetReadDeadline(time.Now().Add(greetWait))
	g := make([]byte, greetingSize)
	if _, err := io.ReadFull(c, g); err != nil || string(g[:len(magic)]) != magic {
		return c, nil, nil
	}
	c.SetReadDeadline(time.Time{})
	return c, g[len(magic):], nil
}

// handshake sends an authenticated request and reads the status.
func (r *run) handshake(c net.Conn, nonce []byte, req request) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req.marshal(r.cfg.Token, nonce)); err != nil {
		return err
	}
	var st [1]byte
	if _, err := io.ReadFull(c, st[:]); err != nil {
		return fmt.Errorf("%w: no answer to the request: %v", ErrProtocol, err)
	}
	switch st[0] {
	case statusOK:
		return nil
	case statusRefused:
		return ErrRefused
	case statusFull:
		return ErrBusy
	case statusTooLong:
		return fmt.Errorf("%w: --max is above the counterpart's --max-hold", ErrBadConfig)
	case statusNoSession:
		return fmt.Errorf("%w: the counterpart ended the measurement", ErrPathFailed)
	}
	return fmt.Errorf("%w: status %q", ErrProtocol, st[0])
}

// measureRTT pings on the control connection a few times; the deadline of
// every test is a few of these RTTs (with TCP's own variance estimate).
func (r *run) measureRTT() error {
	var rtts []time.Duration
	buf := make([]byte, frameSize)
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if err := r.writeFrame(frame{typ: framePing}); err != nil {
			return err
		}
		r.ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := readFrame(r.ctl, buf); err != nil {
			return fmt.Errorf("%w: control connection: %v", ErrPathFailed, err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	r.ctl.SetReadDeadline(time.Time{})
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	r.setRTT(rtts[len(rtts)/2], r.ctl)
	return nil
}

// setRTT takes the RTT (the median ping, or TCP's smoothed estimate when
// larger) and the deadline of a test from it: four RTTs, but never so
// short that a busy host's scheduling passes for a silent drop.
func (r *run) setRTT(rtt time.Duration, c net.Conn) {
	if ti, err := tcpInfo(c); err == nil {
		rtt = max(rtt, time.Duration(ti.Rtt)*time.Microsecond)
	}
	r.rtt = rtt
	r.deadline = min(max(4*rtt, minDeadline), maxDeadline)
}

func (r *run) writeFrame(f frame) error {
	r.ctlMu.Lock()
	defer r.ctlMu.Unlock()
	r.ctl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.ctl.Write(f.marshal())
	return err
}

// plan lays out the grid's tests per direction, and the keepalive ones.
func (r *run) plan() {
	grid := Grid(r.cfg.Min, r.cfg.Max, r.cfg.Precision)
	for _, d := range []Direction{ToClient, ToServer} {
		if !r.cfg.wants(d) {
			continue
		}
		ds := &dirState{dir: d, upper: -1}
		for _, idle := range grid {
			p := &point{idle: idle}
			for i := 0; i < r.cfg.PerPoint; i++ {
				p.tests = append(p.tests, r.newTest(d, idle))
			}
			ds.points = append(ds.points, p)
		}
		r.dirs = append(r.dirs, ds)
	}
	if r.cfg.Keepalive > 0 {
		for _, d := range r.cfg.Directions {
			if d == ToClient && !r.counterpart {
				continue
			}
			t := r.newTest(d, r.cfg.Max)
			t.keepalive = true
			r.ka = append(r.ka, t)
		}
	}
}

func (r *run) newTest(d Direction, idle time.Duration) *test {
	r.nextID++
	t := &test{id: r.nextID, dir: d, idle: idle}
	r.byID[t.id] = t
	return t
}

// openAll opens every test's connection at the start, shortest idles
// first, a few at a time.
func (r *run) openAll(ctx context.Context) error {
	var all []*test
	for _, ds := range r.dirs {
		for _, p := range ds.points {
			all = append(all, p.tests...)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].idle < all[j].idle })
	// The keepalive connections first: they must be idle past the timeout
	// when they are tested, right after the grid's own tests.
	all = append(append([]*test{}, r.ka...), all...)
	work := make(chan *test)
	errc := make(chan error, openers)
	var wg sync.WaitGroup
	// A plain server's accept queue can be short (Python's is 5): a
	// connection the kernel completed but the server never accepted answers
	// the later probe with an RST, which would pass for the middlebox's.
	n := openers
	if !r.counterpart {
		n = plainOpeners
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				if err := r.open(ctx, t); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	var err error
feed:
	for _, t := range all {
		select {
		case work <- t:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// open connects one test and arms it.
func (r *run) open(ctx context.Context, t *test) error {
	c, err := r.cfg.Dial(ctx, r.cfg.Network, r.cfg.Target)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.conns++
	t.conn = c
	r.mu.Unlock()
	if !r.counterpart {
		t.lastPkt = time.Now()
		if t.keepalive {
			return setKeepalive(c, r.cfg.Keepalive, 9)
		}
		go r.plainTest(t)
		return nil
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	g := make([]byte, greetingSize)
	if _, err := io.ReadFull(c, g); err != nil || string(g[:len(magic)]) != magic {
		c.Close()
		return fmt.Errorf("%w: connection %d got no greeting", ErrProtocol, t.id)
	}
	req := request{kind: kindToClient, conn: t.id, session: r.session, idleMS: uint32(t.idle / time.Millisecond), bytes: 8}
	switch {
	case t.dir == ToServer:
		req.kind = kindToServer
	case t.keepalive:
		req.kind = kindTriggered
	}
	if err := r.handshake(c, g[len(magic):], req); err != nil {
		c.Close()
		return err
	}
	// The client's ACK of the status byte is the connection's last packet.
	t.lastPkt = time.Now()
	if t.keepalive {
		return setKeepalive(c, r.cfg.Keepalive, 9)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch t.dir {
	case ToServer:
		t.timer = time.AfterFunc(time.Until(t.lastPkt.Add(t.idle)), func() { r.toServer(t) })
	case ToClient:
		// The counterpart's note comes at the idle; without it the path
		// (or the counterpart) failed.
		t.timer = time.AfterFunc(time.Until(t.lastPkt.Add(t.idle+30*time.Second+10*r.deadline)), func() {
			if !t.noted.Load() {
				r.fail(fmt.Errorf("%w: the counterpart did not report its send on connection %d", ErrPathFailed, t.id))
			}
		})
	}
	return nil
}

// ping asks the pinger for a ping now: a lost test is confirmed by the
// answer.
func (r *run) ping() {
	select {
	case r.pingNow <- struct{}{}:
	default:
	}
}

func (r *run) fail(err error) {
	select {
	case r.failed <- err:
	default:
	}
}

// finish records a test's outcome once and hands it to the loop.
func (r *run) finish(t *test, outcome, by string, measured time.Duration) {
	t.once.Do(func() {
		r.mu.Lock()
		if t.timer != nil {
			t.timer.Stop()
		}
		r.mu.Unlock()
		// A flow that carried the test closes with FIN; a loss stays open
		// until it is confirmed (confirm).
		if outcome == Delivered {
			t.conn.Close()
		}
		r.mu.Lock()
		t.finished, t.outcome, t.by, t.measured = true, outcome, by, measured
		t.finishedAt = int64(time.Since(r.start))
		r.mu.Unlock()
		if outcome != Delivered {
			r.ping()
		}
		r.done <- t
	})
}

// cancel ends a test that is no longer needed.
func (r *run) cancel(t *test) {
	t.once.Do(func() {
		r.mu.Lock()
		if t.timer != nil {
			t.timer.Stop()
		}
		t.cancelled = true
		c := t.conn
		r.mu.Unlock()
		if c != nil {
			abort(c)
		}
	})
}

func (r *run) cancelAll() {
	r.mu.Lock()
	var all []*test
	for _, t := range r.byID {
		all = append(all, t)
	}
	r.mu.Unlock()
	for _, t := range all {
		r.cancel(t)
	}
}

// toServer sends after the idle and waits a deadline for the proof that
// the bytes crossed the path: the counterpart's kernel acknowledging them
// (or its answer, which comes later). The kernel's ACK does not wait for
// the counterpart's process to be scheduled, so a busy far host is not
// taken for a silent drop.
func (r *run) toServer(t *test) {
	const n = 8
	if ti, err := tcpInfo(t.conn); err == nil {
		t.acked0 = ti.Bytes_acked
	}
	acked0 := t.acked0
	now := time.Now()
	idle := now.Sub(t.lastPkt)
	if _, err := t.conn.Write(payload(n)); err != nil {
		r.finish(t, r.classify(t, err), ByClient, idle)
		return
	}
	deadline := now.Add(r.deadline)
	for {
		ti, err := tcpInfo(t.conn)
		switch {
		case err != nil:
			r.finish(t, Silent, "", idle)
			return
		case ti.Bytes_acked >= acked0+n || readable(t.conn):
			r.finish(t, Delivered, "", idle)
			return
		case ti.State == tcpClose || isReset(sockErr(t.conn)):
			r.finish(t, Reset, ByClient, idle)
			return
		case time.Now().After(deadline):
			if t.resetNote.Load() {
				r.finish(t, Reset, ByCounterpart, idle)
			} else {
				r.finish(t, Silent, "", idle)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// toClient waits a deadline after the counterpart's send note for the bytes.
func (r *run) toClient(t *test, idle time.Duration) {
	t.conn.SetReadDeadline(time.Now().Add(r.deadline))
	var b [maxPayload]byte
	n, err := t.conn.Read(b[:])
	if n > 0 || isTimeout(err) && readable(t.conn) {
		r.finish(t, Delivered, "", idle)
		return
	}
	out := r.classify(t, err)
	by := ""
	if out == Reset {
		by = ByClient
		if !isReset(err) {
			by = ByCounterpart
		}
	}
	r.finish(t, out, by, idle)
}

// classify names a failed read or write.
func (r *run) classify(t *test, err error) string {
	switch {
	case isReset(err):
		return Reset
	case t.resetNote.Load():
		return Reset
	case errors.Is(err, io.EOF):
		return Closed
	}
	return Silent
}

// readControl dispatches the counterpart's frames.
func (r *run) readControl() {
	buf := make([]byte, frameSize)
	for {
		f, err := readFrame(r.ctl, buf)
		if err != nil {
			r.fail(fmt.Errorf("%w: the control connection, which exchanges data every %v, broke: %v", ErrPathFailed, pingEvery, err))
			return
		}
		if f.typ == framePing {
			r.lastPong.Store(int64(time.Since(r.start)))
			if v := int64(f.value); v > r.pathOK.Load() {
				r.pathOK.Store(v)
			}
			select {
			case r.wake <- struct{}{}:
			default:
			}
			continue
		}
		r.mu.Lock()
		t := r.byID[f.conn]
		r.mu.Unlock()
		if t == nil {
			continue
		}
		switch f.typ {
		case frameSent:
			if !t.noted.Swap(true) {
				go r.toClient(t, time.Duration(f.value)*time.Millisecond)
			}
		case frameReset:
			t.resetNote.Store(true)
		case frameGot:
			t.gotNote.Store(true)
		}
	}
}

// pinger exchanges data on the control connection every pingEvery, so it
// never idles: its failure is the path's, not an expiry.
func (r *run) pinger(ctx context.Context) {
	tk := time.NewTicker(pingEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		case <-r.pingNow:
		}
		if err := r.writeFrame(frame{typ: framePing, value: uint64(time.Since(r.start))}); err != nil {
			r.fail(fmt.Errorf("%w: the control connection broke: %v", ErrPathFailed, err))
			return
		}
		if since := time.Since(r.start) - time.Duration(r.lastPong.Load()); since > 5*pingEvery+r.deadline {
			r.fail(fmt.Errorf("%w: no answer on the control connection for %v", ErrPathFailed, since.Round(time.Second)))
			return
		}
	}
}

// loop collects outcomes until every direction is decided.
func (r *run) loop(ctx context.Context) (*Result, error) {
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	defer r.closeAll()
	defer r.cancelAll()
	var err error
	for !r.evaluate() {
		select {
		case <-r.done:
		case <-r.wake:
		case err = <-r.failed:
		case <-ctx.Done():
			err = ctx.Err()
		case <-tk.C:
			if r.cfg.Progress != nil {
				el := time.Since(r.start)
				r.cfg.Progress(Progress{Elapsed: el, Worst: max(r.cfg.Max+r.deadline-el, 0), Result: r.result(false)})
			}
		}
		if err != nil {
			res := r.result(false)
			if errors.Is(err, ErrPathFailed) {
				res.PathFailed = err.Error()
			}
			return res, err
		}
	}
	return r.result(true), nil
}

// evaluate decides what it can and reports whether the measurement is over.
func (r *run) evaluate() bool {
	ok := r.okUntil()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.confirm(ok)
	for _, ds := range r.dirs {
		if ds.decided {
			continue
		}
		decided := true
		for i, p := range ds.points {
			s := p.state(ok)
			if s == pending {
				decided = false
				break
			}
			if s == died {
				ds.upper = i
				break
			}
			if s == closed {
				ds.closed = true
				break
			}
		}
		ds.decided = decided
	}
	// A direction that survives past the other's expiry heals: two grid
	// points beyond (the dying point and the next) are enough to say so.
	for _, a := range r.dirs {
		if !a.decided || a.upper < 0 {
			continue
		}
		for _, b := range r.dirs {
			if b == a || b.decided {
				continue
			}
			last := min(a.upper+1, len(b.points)-1)
			heal := true
			for i := 0; i <= last; i++ {
				if b.points[i].state(ok) != survived {
					heal = false
				}
			}
			if heal {
				b.decided, b.heal = true, true
			}
		}
	}
	all := true
	var cancel []*test
	for _, ds := range r.dirs {
		if !ds.decided {
			all = false
			continue
		}
		for _, p := range ds.points {
			for _, t := range p.tests {
				if !t.finished && !t.cancelled {
					cancel = append(cancel, t)
				}
			}
		}
	}
	fire := all && len(r.ka) > 0 && !r.kaFired
	var past time.Duration // the longest idle a decision needed
	if fire {
		r.kaFired = true
		for _, ds := range r.dirs {
			for _, p := range ds.points {
				for _, t := range p.tests {
					if t.finished {
						past = max(past, t.measured)
					}
				}
			}
		}
	}
	kaDone := true
	for _, t := range r.ka {
		kaDone = kaDone && (t.finished || t.cancelled)
	}
	r.mu.Unlock()
	for _, t := range cancel {
		r.cancel(t)
	}
	if fire {
		r.fireKeepalive(past)
	}
	r.mu.Lock()
	return all && kaDone
}

// confirm settles the tentative losses that a ping sent after them has
// confirmed: bytes that reached either end by now make a late delivery;
// otherwise the loss stands and its connection is aborted, so nothing
// retransmits into the dead flow. Called with r.mu held.
func (r *run) confirm(ok int64) {
	for _, t := range r.byID {
		if !t.finished || t.confirmed || t.outcome == Delivered || t.finishedAt > ok {
			continue
		}
		t.confirmed = true
		if t.outcome == Silent && r.arrived(t) {
			t.outcome, t.late = Delivered, true
			t.conn.Close()
			continue
		}
		abort(t.conn)
	}
}

// arrived reports whether a test's bytes (or probe) got through after all.
func (r *run) arrived(t *test) bool {
	if !r.counterpart {
		ti, err := tcpInfo(t.conn)
		return err == nil && !t.probeAt.IsZero() && ti.Probes == 0 &&
			time.Duration(ti.Last_ack_recv)*time.Millisecond <= time.Since(t.probeAt)+10*time.Millisecond
	}
	if readable(t.conn) {
		return true
	}
	if t.dir == ToServer {
		ti, err := tcpInfo(t.conn)
		return err == nil && ti.Bytes_acked >= t.acked0+8
	}
	return false
}

// closeAll aborts what is still open when the measurement ends.
func (r *run) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.byID {
		if t.finished && !t.confirmed && t.outcome != Delivered {
			t.confirmed = true
			abort(t.conn)
		}
	}
}

// okUntil is how far lost tests are confirmed: with a counterpart, up to
// the latest answered ping; without one (no control connection) a loss
// stands once plainGrace has passed without the probe's answer.
func (r *run) okUntil() int64 {
	if !r.counterpart {
		return int64(time.Since(r.start) - max(plainGrace, 4*r.deadline))
	}
	return r.pathOK.Load()
}

// fireKeepalive tests the keepalive connections once every direction is
// decided, each when its own last data is older than past, the longest
// idle the decisions took: the flow would have been forgotten by then
// without the probes.
func (r *run) fireKeepalive(past time.Duration) {
	for _, t := range r.ka {
		var do func()
		switch {
		case !r.counterpart:
			do = func() { r.plainProbe(t) }
		case t.dir == ToServer:
			do = func() { r.toServer(t) }
		default:
			do = func() {
				if err := r.writeFrame(frame{typ: frameTrigger, conn: t.id}); err != nil {
					r.fail(fmt.Errorf("%w: the control connection broke: %v", ErrPathFailed, err))
				}
			}
		}
		r.mu.Lock()
		t.timer = time.AfterFunc(time.Until(t.lastPkt.Add(past)), do)
		r.mu.Unlock()
	}
}
