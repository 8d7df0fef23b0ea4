package path

import (
	"sync"
	"sync/atomic"
	"time"
)

// session is one client's measurement on the counterpart: its control
// connection and the test connections opened under the same session id.
// It ends when the control connection does, and takes them all with it.
type session struct {
	ctl         *heldConn
	wmu         sync.Mutex // serialises frames on ctl
	mu          sync.Mutex
	conns       map[uint32]*heldConn
	trigger     map[uint32]func()
	done        bool
	connections atomic.Int64
	sent        atomic.Int64
	answered    atomic.Int64
	resets      atomic.Int64
}

// add registers a test connection; false when the id is taken or the
// session has ended.
func (ss *session) add(id uint32, h *heldConn) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.done || ss.conns[id] != nil {
		return false
	}
	ss.conns[id] = h
	return true
}

func (ss *session) remove(id uint32) {
	ss.mu.Lock()
	delete(ss.conns, id)
	delete(ss.trigger, id)
	ss.mu.Unlock()
}

func (ss *session) setTrigger(id uint32, f func()) {
	ss.mu.Lock()
	ss.trigger[id] = f
	ss.mu.Unlock()
}

// fire runs and forgets the trigger of connection id, once.
func (ss *session) fire(id uint32) {
	ss.mu.Lock()
	f := ss.trigger[id]
	delete(ss.trigger, id)
	ss.mu.Unlock()
	if f != nil {
		f()
	}
}

// note sends a frame to the client's control connection.
func (ss *session) note(f frame) {
	if f.typ == frameReset {
		ss.resets.Add(1)
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	ss.ctl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	ss.ctl.Write(f.marshal())
}

// close ends the session and every connection in it.
func (ss *session) close() {
	ss.mu.Lock()
	ss.done = true
	conns := make([]*heldConn, 0, len(ss.conns))
	for _, h := range ss.conns {
		conns = append(conns, h)
	}
	ss.mu.Unlock()
	for _, h := range conns {
		h.abort()
	}
	ss.ctl.abort()
}

// control serves a control connection: pings are echoed, triggers fire,
// and the counterpart's notes go out on it; when it ends, so does the
// session.
func (s *Server) control(h *heldConn, r request) {
	ss := &session{ctl: h, conns: map[uint32]*heldConn{}, trigger: map[uint32]func(){}}
	s.mu.Lock()
	if s.session[r.session] != nil || s.closed {
		s.mu.Unlock()
		h.refuse(statusBad)
		return
	}
	s.session[r.session] = ss
	s.mu.Unlock()
	start := time.Now()
	if _, err := h.Write([]byte{statusOK}); err == nil {
		buf := make([]byte, frameSize)
		for {
			h.SetReadDeadline(time.Now().Add(controlTimeout))
			f, err := readFrame(h, buf)
			if err != nil {
				break
			}
			switch f.typ {
			case framePing:
				ss.note(f)
			case frameTrigger:
				ss.fire(f.conn)
			}
		}
	}
	s.mu.Lock()
	delete(s.session, r.session)
	s.mu.Unlock()
	ss.close()
	s.log(Measurement{Client: h.src, Started: start, Duration: time.Since(start),
		Connections: int(ss.connections.Load()), Sent: int(ss.sent.Load()),
		Answered: int(ss.answered.Load()), Resets: int(ss.resets.Load())})
}
