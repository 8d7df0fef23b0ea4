package path

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the counterpart's limits.
const (
	DefaultMaxConnections = 2000
	DefaultMaxHold        = 6 * time.Hour
)

// Timeouts of the counterpart's own: a client that connects and says nothing
// is closed after handshakeTimeout; a measurement whose control connection
// is silent for controlTimeout is over; after a test, the client has
// afterTestGrace to close its end before the counterpart aborts it.
const (
	handshakeTimeout = 10 * time.Second
	controlTimeout   = 30 * time.Second
	afterTestGrace   = 15 * time.Second
	ackWait          = 2 * time.Second
	maxRefusing      = 64
)

// ServeConfig is the counterpart's configuration.
type ServeConfig struct {
	// Token authenticates clients; a client with another token is refused.
	// Empty accepts clients without a token only.
	Token string
	// MaxConnections bounds the connections held at once (default 2000).
	MaxConnections int
	// MaxPerSource bounds the connections held for one client address
	// (default MaxConnections/2, at least 1).
	MaxPerSource int
	// MaxHold is the longest idle a client may ask for; every connection is
	// closed after it (default 6h).
	MaxHold time.Duration
	// Log, when set, gets one Measurement per measurement that ended, and
	// one per refused client.
	Log func(Measurement)
}

// Measurement is what the counterpart saw of one client's measurement, for
// its log line.
type Measurement struct {
	Client      netip.Addr
	Refused     string // why the client was refused; empty for a measurement
	Started     time.Time
	Duration    time.Duration
	Connections int // test connections accepted
	Sent        int // to-client sends
	Answered    int // to-server answers
	Resets      int // RSTs seen by the counterpart
}

// Server is the counterpart: it holds the measuring client's connections,
// sends on them when asked, answers, and notes what it saw on the
// client's control connection.
type Server struct {
	cfg      ServeConfig
	held     atomic.Int64
	refusing atomic.Int64 // connections over a limit, being told so
	mu       sync.Mutex
	perSrc   map[netip.Addr]int
	session  map[[8]byte]*session
	wg       sync.WaitGroup
	closed   bool
}

// NewServer returns a counterpart with cfg's limits (zero values: defaults).
func NewServer(cfg ServeConfig) *Server {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = max(cfg.MaxConnections/2, 1)
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = DefaultMaxHold
	}
	return &Server{cfg: cfg, perSrc: map[netip.Addr]int{}, session: map[[8]byte]*session{}}
}

// Listen opens a TCP listener for the counterpart (or a plain server in
// tests) whose accepted connections have kernel keepalive off and are plain
// TCP: Go's defaults (keepalive every 15 s, MPTCP) would refresh the very
// middleboxes being measured.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, "tcp", addr)
}

// Held is the number of connections the counterpart holds now.
func (s *Server) Held() int { return int(s.held.Load()) }

// Serve accepts connections on ln until ctx is done, then closes ln and
// every connection it holds and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
	s.mu.Lock()
	s.closed = true
	sessions := make([]*session, 0, len(s.session))
	for _, ss := range s.session {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.close()
	}
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// admit counts a new connection from src; false when a limit is reached.
func (s *Server) admit(src netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || int(s.held.Load()) >= s.cfg.MaxConnections || s.perSrc[src] >= s.cfg.MaxPerSource {
		return false
	}
	s.held.Add(1)
	s.perSrc[src]++
	return true
}

func (s *Server) release(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held.Add(-1)
	if s.perSrc[src]--; s.perSrc[src] <= 0 {
		delete(s.perSrc, src)
	}
}

func (s *Server) log(m Measurement) {
	if s.cfg.Log != nil {
		s.cfg.Log(m)
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// handle runs one connection's handshake and hands it to its kind.
func (s *Server) handle(c net.Conn) {
	src := addrOf(c.RemoteAddr())
	admitted := s.admit(src)
	if !admitted {
		// Over a limit, a client is told so (status F) in a handshake of
		// its own; a flood beyond that is closed at once.
		if s.refusing.Add(1) > maxRefusing {
			s.refusing.Add(-1)
			c.Close()
			return
		}
		defer s.refusing.Add(-1)
	}
	held := &heldConn{Conn: c, s: s, src: src, admitted: admitted}
	var nonce [16]byte
	rand.Read(nonce[:])
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := c.Write(append([]byte(magic), nonce[:]...)); err != nil {
		held.abort()
		return
	}
	buf := make([]byte, requestSize)
	n, err := io.ReadFull(c, buf)
	if err != nil && n == 0 {
		held.abort()
		return
	}
	var r request
	if err == nil {
		r, err = parseRequest(buf, s.cfg.Token, nonce[:])
	} else {
		err = ErrProtocol
	}
	switch {
	case errors.Is(err, errBadMAC):
		s.log(Measurement{Client: src, Refused: "bad token", Started: time.Now()})
		held.refuse(statusRefused)
		return
	case err != nil:
		held.cleanClose()
		return
	case !admitted:
		held.refuse(statusFull)
		return
	case time.Duration(r.idleMS)*time.Millisecond > s.cfg.MaxHold:
		held.refuse(statusTooLong)
		return
	}
	if r.kind == kindControl {
		s.control(held, r)
		return
	}
	s.mu.Lock()
	ss := s.session[r.session]
	s.mu.Unlock()
	if ss == nil {
		held.refuse(statusNoSession)
		return
	}
	// Every test connection ends by MaxHold at the latest. Set up before
	// the session knows it: from then on its close may abort it any time.
	held.ss, held.id = ss, r.conn
	held.hold = time.AfterFunc(s.cfg.MaxHold+afterTestGrace, held.abort)
	if !ss.add(r.conn, held) {
		held.hold.Stop()
		held.ss = nil
		held.refuse(statusNoSession)
		return
	}
	if _, err := c.Write([]byte{statusOK}); err != nil {
		held.abort()
		return
	}
	c.SetDeadline(time.Time{})
	ss.connections.Add(1)
	switch r.kind {
	case kindToClient:
		held.sendAfterIdle(time.Duration(r.idleMS)*time.Millisecond, int(r.bytes))
	case kindToServer:
		held.answer(int(r.bytes))
	case kindTriggered:
		ss.setTrigger(r.conn, func() { go held.send(int(r.bytes), 0) })
	}
}

// heldConn is one connection the counterpart holds: about a kilobyte of
// its own besides the runtime's netFD, and a goroutine only while a
// to-server connection waits for the client's bytes.
type heldConn struct {
	net.Conn
	s        *Server
	ss       *session
	id       uint32
	src      netip.Addr
	admitted bool
	hold     *time.Timer
	once     sync.Once
}

// abort closes with an RST and releases the connection's place.
func (h *heldConn) abort() {
	h.once.Do(func() {
		if h.hold != nil {
			h.hold.Stop()
		}
		abort(h.Conn)
		if h.ss != nil {
			h.ss.remove(h.id)
		}
		if h.admitted {
			h.s.release(h.src)
		}
	})
}

// refuse answers a request with a refusal and closes.
func (h *heldConn) refuse(status byte) {
	h.Conn.Write([]byte{status})
	h.cleanClose()
}

// cleanClose ends a connection with FIN, not RST: whatever the peer sent
// (garbage on the port) is read and discarded first, up to a bound, so the
// kernel has nothing unread that would turn the close into a reset.
func (h *heldConn) cleanClose() {
	if tc, ok := h.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
		h.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.CopyN(io.Discard, h.Conn, 1<<18)
	}
	h.once.Do(func() {
		h.Conn.Close()
		if h.admitted {
			h.s.release(h.src)
		}
	})
}

// sendAfterIdle sends n bytes once the connection has been idle for d,
// timed from its last packet on this host's clock (no clock sync with the
// client), with a timer, not a goroutine, while it waits.
func (h *heldConn) sendAfterIdle(d time.Duration, n int) {
	// The last packet is the client's ACK of the status byte: wait for it.
	deadline := time.Now().Add(ackWait)
	var last time.Time
	for {
		now := time.Now()
		l, ti, err := lastPacket(h.Conn, now)
		if err != nil {
			h.abort()
			return
		}
		last = l
		if ti.Unacked == 0 || now.After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.AfterFunc(time.Until(last.Add(d)), func() { h.send(n, d) })
}

// send writes the n bytes of a to-client test, notes it on the control
// connection with the idle the connection really had, and waits for the
// client's close (or an RST, which it notes too).
func (h *heldConn) send(n int, planned time.Duration) {
	now := time.Now()
	last, _, err := lastPacket(h.Conn, now)
	idle := planned
	if err == nil {
		idle = now.Sub(last)
	}
	_, werr := h.Conn.Write(payload(n))
	h.ss.note(frame{typ: frameSent, conn: h.id, value: uint64(idle / time.Millisecond)})
	h.ss.sent.Add(1)
	if werr != nil {
		if isReset(werr) {
			h.ss.note(frame{typ: frameReset, conn: h.id})
		}
		h.abort()
		return
	}
	h.awaitClose()
}

// answer waits for the client's to-server bytes and answers with as many,
// at most n.
func (h *heldConn) answer(n int) {
	buf := make([]byte, maxPayload)
	k, err := h.Conn.Read(buf)
	if err != nil {
		if isReset(err) {
			h.ss.note(frame{typ: frameReset, conn: h.id})
		}
		h.abort()
		return
	}
	h.ss.note(frame{typ: frameGot, conn: h.id, value: uint64(k)})
	if _, err := h.Conn.Write(payload(min(k, n))); err != nil {
		h.abort()
		return
	}
	h.ss.answered.Add(1)
	h.awaitClose()
}

// awaitClose reads until the client closes, an RST (noted), or the grace.
func (h *heldConn) awaitClose() {
	h.Conn.SetReadDeadline(time.Now().Add(afterTestGrace))
	var b [maxPayload]byte
	for {
		if _, err := h.Conn.Read(b[:]); err != nil {
			if isReset(err) {
				h.ss.note(frame{typ: frameReset, conn: h.id})
			}
			break
		}
	}
	h.abort()
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'k'
	}
	return b
}
