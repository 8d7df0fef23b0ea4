package preload

import (
	"encoding/json"
	"time"
)

// The JSON contract writes durations as whole seconds (idle, interval) and
// milliseconds (user timeout), the units of the socket options themselves.

type configJSON struct {
	Idle        int64 `json:"idle_s"`
	Interval    int64 `json:"interval_s"`
	Count       int   `json:"count"`
	UserTimeout int64 `json:"user_timeout_ms"`
	Off         bool  `json:"off"`
	NoEnforce   bool  `json:"no_enforce"`
}

// MarshalJSON writes idle_s, interval_s, count, user_timeout_ms, off and
// no_enforce; 0 means the kernel default.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(configJSON{int64(c.Idle / time.Second), int64(c.Interval / time.Second), c.Count,
		c.UserTimeout.Milliseconds(), c.Off, c.NoEnforce})
}

type socketJSON struct {
	FD          int    `json:"fd"`
	Family      string `json:"family"`
	State       string `json:"state"`
	Listening   bool   `json:"listening"`
	Local       string `json:"local"`
	Remote      string `json:"remote,omitempty"`
	Keepalive   bool   `json:"keepalive"`
	Idle        int64  `json:"idle_s"`
	Interval    int64  `json:"interval_s"`
	Count       int    `json:"count"`
	UserTimeout int64  `json:"user_timeout_ms"`
	Source      string `json:"source"`
}

func (s Socket) json() socketJSON {
	return socketJSON{s.FD, s.Family, s.State, s.Listening, s.Local, s.Remote, s.Keepalive,
		int64(s.Idle / time.Second), int64(s.Interval / time.Second), s.Count, s.UserTimeout.Milliseconds(), s.Source}
}

// MarshalJSON writes the socket with durations in the options' own units.
func (s Socket) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.json())
}

// MarshalJSON flattens the socket and adds ok and problem.
func (s SocketCheck) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		socketJSON
		OK      bool   `json:"ok"`
		Problem string `json:"problem,omitempty"`
	}{s.Socket.json(), s.OK, s.Problem})
}
