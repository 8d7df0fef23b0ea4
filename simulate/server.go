package simulate

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// ServerConfig is how the lab's HTTP server behaves.
type ServerConfig struct {
	// ResponseDelay is how long the server "works" before it answers: the
	// idle period the middlebox sees.
	ResponseDelay time.Duration
	// Keepalive, when positive, turns on the server's own keepalive probes
	// with this idle and interval. Zero: the server sends nothing while it works.
	Keepalive time.Duration
	// Port is the TCP port to listen on (ServerPort when zero).
	Port int
}

// server is the lab's HTTP server: one listener in the server namespace,
// answering every request after the configured delay.
type server struct {
	ln   net.Listener
	cfg  ServerConfig
	wg   sync.WaitGroup
	stop chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startServer listens on the server namespace's addresses. The socket is
// made on a thread inside the namespace, which binds it there for good.
func startServer(ns netns.NsHandle, cfg ServerConfig) (*server, error) {
	lc := net.ListenConfig{KeepAlive: -1} // Go would otherwise probe every 15 s
	if cfg.Keepalive > 0 {
		lc = net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: cfg.Keepalive, Interval: cfg.Keepalive, Count: 9}}
	}
	s := &server{cfg: cfg, stop: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	err := inNetns(ns, func() error {
		var err error
		s.ln, err = lc.Listen(context.Background(), "tcp", ":"+strconv.Itoa(cmp.Or(cfg.Port, ServerPort)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab server: %w", err)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	select {
	case <-time.After(s.cfg.ResponseDelay):
	case <-s.stop:
		return
	}
	body := fmt.Sprintf("kadiag lab: answered after %s\n", s.cfg.ResponseDelay)
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	// Let the kernel deliver (or keep retransmitting) the answer until the
	// lab ends, instead of closing and turning it into a FIN race.
	select {
	case <-s.stop:
	case <-readEOF(r):
	}
}

func readEOF(r *bufio.Reader) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
		}
	}()
	return done
}

// Close stops the server and every connection it holds.
func (s *server) Close() error {
	close(s.stop)
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
