package preload

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Linux limits for the keepalive socket options (net/ipv4/tcp.c).
const (
	MaxIdle     = 32767 * time.Second
	MaxInterval = 32767 * time.Second
	MaxCount    = 127
	// MaxUserTimeout is TCP_USER_TIMEOUT's limit: INT_MAX milliseconds.
	MaxUserTimeout = 2147483647 * time.Millisecond
)

// The library's defaults with nothing set: the first probe after 60 s idle,
// a dead peer found 60 + 15 × 4 = 120 s after the connection went idle, below
// every middlebox idle timeout in docs/preload.md.
const (
	DefaultIdle     = 60 * time.Second
	DefaultInterval = 15 * time.Second
	DefaultCount    = 4
)

// Environment variables the library reads.
const (
	EnvPreload     = "LD_PRELOAD"
	EnvIdle        = "KADIAG_KEEPIDLE"
	EnvInterval    = "KADIAG_KEEPINTVL"
	EnvCount       = "KADIAG_KEEPCNT"
	EnvUserTimeout = "KADIAG_USER_TIMEOUT"
	EnvKeepalive   = "KADIAG_KEEPALIVE"
	EnvEnforce     = "KADIAG_ENFORCE"
	EnvDebug       = "KADIAG_DEBUG"
	// The bare names libkeepalive users already set; the KADIAG_ ones win.
	EnvBareIdle     = "KEEPIDLE"
	EnvBareInterval = "KEEPINTVL"
	EnvBareCount    = "KEEPCNT"
)

// ErrBadValue is returned (wrapped) for a value outside the accepted form.
var ErrBadValue = errors.New("bad value")

// Config is what the library applies to every managed socket. A zero
// duration or count means "not set: the kernel default stays".
type Config struct {
	Idle        time.Duration
	Interval    time.Duration
	Count       int
	UserTimeout time.Duration
	Off         bool // KADIAG_KEEPALIVE=off: loaded but inert
	NoEnforce   bool // KADIAG_ENFORCE=0
}

// Defaults is the Config the library uses with nothing set.
func Defaults() Config {
	return Config{Idle: DefaultIdle, Interval: DefaultInterval, Count: DefaultCount}
}

// ParseDuration reads a value the way the library does: whole seconds
// ("90") or a whole number with unit s, m or h ("90s", "5m", "1h"); with
// allowMS also "ms".
func ParseDuration(s string, allowMS bool) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 {
		return 0, fmt.Errorf("%w %q", ErrBadValue, s)
	}
	n, _ := strconv.Atoi(s[:i])
	switch s[i:] {
	case "", "s":
		return time.Duration(n) * time.Second, nil
	case "m":
		return time.Duration(n) * time.Minute, nil
	case "h":
		return time.Duration(n) * time.Hour, nil
	case "ms":
		if allowMS {
			return time.Duration(n) * time.Millisecond, nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrBadValue, s)
}

// Validate checks c against Linux's limits; the error names the field and
// the accepted range.
func (c Config) Validate() error {
	if c.Idle != 0 && (c.Idle < time.Second || c.Idle > MaxIdle || c.Idle%time.Second != 0) {
		return fmt.Errorf("%w: idle %v: want whole seconds 1s-32767s", ErrBadValue, c.Idle)
	}
	if c.Interval != 0 && (c.Interval < time.Second || c.Interval > MaxInterval || c.Interval%time.Second != 0) {
		return fmt.Errorf("%w: interval %v: want whole seconds 1s-32767s", ErrBadValue, c.Interval)
	}
	if c.Count < 0 || c.Count > MaxCount {
		return fmt.Errorf("%w: count %d: want 1-127 probes", ErrBadValue, c.Count)
	}
	if c.UserTimeout < 0 || c.UserTimeout > MaxUserTimeout || c.UserTimeout%time.Millisecond != 0 {
		return fmt.Errorf("%w: user timeout %v: want 1ms-2147483s in whole milliseconds", ErrBadValue, c.UserTimeout)
	}
	return nil
}

// EnvVar is one NAME=value pair.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Env returns the exact environment that makes a process load the library at
// libPath with c: LD_PRELOAD first, then the settings the library reads.
func Env(libPath string, c Config) ([]EnvVar, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !strings.Contains(libPath, "/") {
		// ld.so searches a bare name in system paths only, never the
		// working directory; a path is the only reliable form.
		return nil, fmt.Errorf("%w: library path %q must contain a slash", ErrBadValue, libPath)
	}
	env := []EnvVar{{EnvPreload, libPath}}
	if c.Off {
		return append(env, EnvVar{EnvKeepalive, "off"}), nil
	}
	if c.Idle != 0 {
		env = append(env, EnvVar{EnvIdle, strconv.Itoa(int(c.Idle / time.Second))})
	}
	if c.Interval != 0 {
		env = append(env, EnvVar{EnvInterval, strconv.Itoa(int(c.Interval / time.Second))})
	}
	if c.Count != 0 {
		env = append(env, EnvVar{EnvCount, strconv.Itoa(c.Count)})
	}
	if c.UserTimeout != 0 {
		v := strconv.FormatInt(c.UserTimeout.Milliseconds(), 10) + "ms"
		if c.UserTimeout%time.Second == 0 {
			v = strconv.FormatInt(int64(c.UserTimeout/time.Second), 10) + "s"
		}
		env = append(env, EnvVar{EnvUserTimeout, v})
	}
	if c.NoEnforce {
		env = append(env, EnvVar{EnvEnforce, "0"})
	}
	return env, nil
}

// Warning is a setting the library rejects, with the line it prints.
type Warning struct {
	Var   string `json:"var"`
	Value string `json:"value"`
}

// FromEnviron computes the Config the library derives from a process
// environment (NAME=value strings, as in /proc/PID/environ), following the
// library's rules: KADIAG_ names win over bare ones, a bad value leaves that
// setting at the kernel default (zero here) and is returned as a Warning.
func FromEnviron(environ []string) (Config, []Warning) {
	get := func(name string) (string, bool) {
		for i := len(environ) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(environ[i], name+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	var warns []Warning
	pick := func(kadiag, bare string) (string, string, bool) {
		if v, ok := get(kadiag); ok {
			return kadiag, v, true
		}
		if bare != "" {
			if v, ok := get(bare); ok {
				return bare, v, true
			}
		}
		return "", "", false
	}
	dur := func(kadiag, bare string, def, lo, hi time.Duration, allowUnits, allowMS bool) time.Duration {
		name, v, ok := pick(kadiag, bare)
		if !ok {
			return def
		}
		d, err := ParseDuration(v, allowMS)
		if err == nil && !allowUnits && strings.ContainsAny(v, "smh") {
			err = ErrBadValue
		}
		if err != nil || d < lo || d > hi {
			warns = append(warns, Warning{name, v})
			return 0
		}
		return d
	}
	flag := func(name string, def bool) bool {
		v, ok := get(name)
		if !ok || v == "" {
			return def
		}
		switch strings.ToLower(v) {
		case "1", "on", "true", "yes":
			return true
		case "0", "off", "false", "no":
			return false
		}
		warns = append(warns, Warning{name, v})
		return def
	}
	var c Config
	c.Off = !flag(EnvKeepalive, true)
	c.NoEnforce = !flag(EnvEnforce, true)
	flag(EnvDebug, false)
	c.Idle = dur(EnvIdle, EnvBareIdle, DefaultIdle, time.Second, MaxIdle, true, false)
	c.Interval = dur(EnvInterval, EnvBareInterval, DefaultInterval, time.Second, MaxInterval, true, false)
	c.Count = int(dur(EnvCount, EnvBareCount, DefaultCount*time.Second, time.Second, MaxCount*time.Second, false, false) / time.Second)
	c.UserTimeout = dur(EnvUserTimeout, "", 0, time.Millisecond, MaxUserTimeout, true, true)
	return c, warns
}
