package path

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Defaults of a measurement.
const (
	DefaultMin       = 10 * time.Second
	DefaultMax       = 2 * time.Hour
	DefaultPrecision = 0.02
	DefaultPerPoint  = 2
)

// Timings of the protocol. A test counts as silent a deadline after its
// send: a few RTTs of the control connection, never below minDeadline
// (scheduling on a busy host) nor above maxDeadline; TCP's own give-up
// (~15 min) is never waited for.
const (
	pingEvery    = 2 * time.Second
	minDeadline  = 250 * time.Millisecond
	maxDeadline  = 10 * time.Second
	greetWait    = 2 * time.Second
	openers      = 16
	plainOpeners = 2
	// plainGrace: without a control connection, a probe unanswered by
	// the deadline is checked once more this much later before the loss
	// counts (a busy host answers late; a forgotten flow never).
	plainGrace = time.Second
)

// Config is a measurement's configuration.
type Config struct {
	// Target is HOST:PORT as net.Dial accepts it ("[::1]:7350" for IPv6).
	Target string
	// Token authenticates the client to the counterpart.
	Token string
	// Min and Max bound the idle durations tested (defaults 10s, 2h).
	Min, Max time.Duration
	// Precision is the relative error of the answer (default 0.02 = ±2 %).
	Precision float64
	// Directions measured (default both).
	Directions []Direction
	// Keepalive, when set, also checks that kernel keepalive probes every
	// Keepalive keep a flow alive past the timeout.
	Keepalive time.Duration
	// PerPoint is the number of connections per grid point and direction
	// (default 2): an early eviction of one is not taken for the timeout.
	PerPoint int
	// Network is "tcp" (default), "tcp4" or "tcp6".
	Network string
	// Dial opens a connection (default: a dialer with keepalive off).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Progress, when set, is called about every 250 ms with the state so far.
	Progress func(Progress)
}

// Progress is a measurement under way.
type Progress struct {
	Elapsed time.Duration
	// Worst is the longest the measurement can still take (to --max).
	Worst time.Duration
	// Result is what is known so far.
	Result *Result
}

// ErrBadConfig is returned (wrapped) for a configuration that cannot run.
var ErrBadConfig = errors.New("bad path configuration")

// ErrPathFailed is returned (wrapped) when the control connection, which
// exchanges data every few seconds, broke: the path itself failed, so no
// idle expiry can be told from it.
var ErrPathFailed = errors.New("the path failed")

func (c *Config) defaults() error {
	if c.Min == 0 {
		c.Min = DefaultMin
	}
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	if c.Precision == 0 {
		c.Precision = DefaultPrecision
	}
	if c.PerPoint == 0 {
		c.PerPoint = DefaultPerPoint
	}
	if len(c.Directions) == 0 {
		c.Directions = []Direction{ToClient, ToServer}
	}
	if c.Network == "" {
		c.Network = "tcp"
	}
	if c.Dial == nil {
		d := net.Dialer{KeepAlive: -1, Timeout: 10 * time.Second}
		d.SetMultipathTCP(false)
		c.Dial = d.DialContext
	}
	switch {
	case c.Min < time.Second:
		return fmt.Errorf("%w: --min %v: at least 1s", ErrBadConfig, c.Min)
	case c.Max <= c.Min:
		return fmt.Errorf("%w: --max %v must be above --min %v", ErrBadConfig, c.Max, c.Min)
	case c.Max > 24*time.Hour:
		return fmt.Errorf("%w: --max %v: at most 24h", ErrBadConfig, c.Max)
	case c.Precision < 0.001 || c.Precision > 0.25:
		return fmt.Errorf("%w: --precision %g: between 0.1%% and 25%%", ErrBadConfig, c.Precision*100)
	case c.PerPoint < 1 || c.PerPoint > 16:
		return fmt.Errorf("%w: %d connections per point: 1 to 16", ErrBadConfig, c.PerPoint)
	case c.Keepalive != 0 && c.Keepalive < time.Second:
		return fmt.Errorf("%w: --keepalive %v: at least 1s (the kernel's unit)", ErrBadConfig, c.Keepalive)
	}
	for _, d := range c.Directions {
		if d != ToClient && d != ToServer {
			return fmt.Errorf("%w: direction %q (use to-client, to-server or both)", ErrBadConfig, d)
		}
	}
	if n := len(Grid(c.Min, c.Max, c.Precision)) * c.PerPoint * len(c.Directions); n > 4000 {
		return fmt.Errorf("%w: --min %v, --max %v and --precision %g%% need %d connections, at most 4000: narrow the range or lower the precision", ErrBadConfig, c.Min, c.Max, c.Precision*100, n)
	}
	return nil
}

func (c *Config) wants(d Direction) bool {
	for _, x := range c.Directions {
		if x == d {
			return true
		}
	}
	return false
}
