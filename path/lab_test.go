package path

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/simulate"
	vns "github.com/vishvananda/netns"
)

// lab is simulate's lab: a client, a NAT middlebox that forgets flows idle
// for Idle (conntrack's established timeout of its own namespace, the
// ground truth), and a server namespace.
type lab struct {
	*simulate.Lab
	idle  time.Duration
	after middlebox.AfterExpiry
}

func newLab(t *testing.T, idle time.Duration, after middlebox.AfterExpiry) *lab {
	t.Helper()
	testenv.Privileged(t)
	l, err := simulate.NewLab(simulate.LabConfig{Idle: idle, After: after})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &lab{Lab: l, idle: idle, after: after}
}

// serverHost is the lab server's address, from simulate's own URL.
func serverHost(ipv6 bool) string {
	u, err := url.Parse(simulate.ServerURL(ipv6))
	if err != nil {
		panic(err)
	}
	return u.Hostname()
}

// listenIn opens a listener inside ns.
func listenIn(t *testing.T, ns vns.NsHandle, addr string) net.Listener {
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

// serve runs a counterpart in the lab's server namespace on port.
func (l *lab) serve(t *testing.T, cfg ServeConfig, addr string) *Server {
	t.Helper()
	ln := listenIn(t, l.Server, addr)
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

func TestSmoke(t *testing.T) {
	l := newLab(t, 6*time.Second, middlebox.Reset)
	l.serve(t, ServeConfig{Token: "s3cret"}, "0.0.0.0:7350")
	res, err := Measure(context.Background(), Config{Target: net.JoinHostPort(serverHost(false), "7350"), Token: "s3cret",
		Min: 2 * time.Second, Max: 20 * time.Second, Dial: dialIn(l.Client)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := jsonIndent(res)
	t.Logf("%s", b)
}
