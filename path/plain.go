package path

import (
	"context"
	"errors"
	"io"
	"time"
)

// plain measures against a server that is no counterpart: to-server only,
// each test a kernel keepalive probe at its idle (nothing enters the
// server's byte stream), answered by the server's kernel with an ACK, by a
// middlebox with an RST, or by nothing.
func (r *run) plain(ctx context.Context) (*Result, error) {
	c, err := r.cfg.Dial(ctx, r.cfg.Network, r.cfg.Target)
	if err != nil {
		return nil, err
	}
	r.conns++
	r.setRTT(0, c)
	c.Close()
	r.cfg.Directions = []Direction{ToServer}
	r.plan()
	r.done = make(chan *test, len(r.byID))
	if err := r.openAll(ctx); err != nil {
		r.cancelAll()
		return nil, err
	}
	return r.loop(ctx)
}

// plainTest waits out the idle, noticing a server that closes first, then
// probes.
func (r *run) plainTest(t *test) {
	t.conn.SetReadDeadline(t.lastPkt.Add(t.idle))
	var b [512]byte
	for {
		n, err := t.conn.Read(b[:])
		if n > 0 {
			// The server spoke (a banner): its packet refreshed the flow.
			t.lastPkt = time.Now()
			t.conn.SetReadDeadline(t.lastPkt.Add(t.idle))
			continue
		}
		switch {
		case errors.Is(err, io.EOF):
			r.finish(t, Closed, "", time.Since(t.lastPkt))
			return
		case isReset(err):
			r.finish(t, Reset, ByClient, time.Since(t.lastPkt))
			return
		case isTimeout(err):
			r.plainProbe(t)
			return
		case err != nil:
			r.finish(t, Silent, "", time.Since(t.lastPkt))
			return
		}
	}
}

// TCP states in TCP_INFO.
const (
	tcpEstablished = 1
	tcpClose       = 7
	tcpCloseWait   = 8
)

// plainProbe sends one keepalive probe now and waits a deadline for its ACK.
func (r *run) plainProbe(t *test) {
	idle := time.Since(t.lastPkt)
	if err := probeNow(t.conn); err != nil {
		r.finish(t, Silent, "", idle)
		return
	}
	sent := time.Now()
	t.probeAt = sent
	for {
		time.Sleep(2 * time.Millisecond)
		ti, err := tcpInfo(t.conn)
		if err != nil {
			r.finish(t, Silent, "", idle)
			return
		}
		if serr := sockErr(t.conn); isReset(serr) || ti.State == tcpClose {
			r.finish(t, Reset, ByClient, idle)
			return
		}
		if ti.State == tcpCloseWait {
			r.finish(t, Closed, "", idle)
			return
		}
		// Before the probe the last ACK is as old as the idle; one younger
		// than the probe is its answer (rcv_tstamp has jiffy granularity).
		// Both ages are read at this instant, so a poll delayed by a busy
		// host still tells them apart.
		if time.Duration(ti.Last_ack_recv)*time.Millisecond <= time.Since(sent)+10*time.Millisecond && ti.Probes == 0 {
			r.finish(t, Delivered, "", idle)
			return
		}
		if time.Since(sent) > r.deadline {
			r.finish(t, Silent, "", idle)
			return
		}
	}
}
