package fix

import (
	"time"

	"golang.org/x/sys/unix"
)

// WatchOutcome is what happened to a socket while it was watched.
type WatchOutcome string

const (
	// Alive: a keepalive probe (or other traffic) was answered.
	Alive WatchOutcome = "alive"
	// Forgotten: the connection was closed by a reset, or the kernel gave
	// up after unanswered probes: the application now gets an error instead
	// of waiting forever.
	Forgotten WatchOutcome = "forgotten"
	// Unanswered: probes went out and none was answered yet.
	Unanswered WatchOutcome = "unanswered"
	// Quiet: no probe was due during the watch (idle shorter than keepidle).
	Quiet WatchOutcome = "quiet"
)

// Watch is what a socket did during --watch.
type Watch struct {
	Outcome WatchOutcome `json:"outcome"`
	// Answered counts probes (or other segments) answered, seen as the
	// kernel's last-ACK clock restarting.
	Answered int `json:"answered"`
	// Unanswered is the most unanswered probes seen at once (tcpi_probes).
	Unanswered int `json:"unanswered"`
	// Closed is "reset" (closed before the probe count ran out) or
	// "timeout" (the kernel gave up after unanswered probes); "" while open.
	Closed string `json:"closed,omitempty"`
	// AtS is when the socket closed, or the first answer came, after the fix.
	AtS float64 `json:"at_s,omitempty"`
}

type watched struct {
	fd  int
	idx int

	lastAck   uint32
	seen      bool
	answeredN int
	maxProbes int
	closed    string
	at        time.Duration
	first     time.Duration
}

// watchEvery is how often the sockets' tcp_info is sampled.
const watchEvery = 50 * time.Millisecond

// watch samples tcp_info of the duplicated sockets for d. Reading tcp_info
// changes nothing (SO_ERROR, which would clear the error the application
// is about to see, is never read).
func watch(r *Report, ws []watched, d time.Duration) {
	start := time.Now()
	for {
		el := time.Since(start)
		for i := range ws {
			w := &ws[i]
			if w.closed != "" {
				continue
			}
			ti, err := unix.GetsockoptTCPInfo(w.fd, unix.SOL_TCP, unix.TCP_INFO)
			if err != nil {
				continue
			}
			if int(ti.Probes) > w.maxProbes {
				w.maxProbes = int(ti.Probes)
			}
			if ti.State == 7 { // TCP_CLOSE
				cnt := r.Sockets[w.idx].After.Count
				w.closed, w.at = "reset", el
				if w.maxProbes > 0 && w.maxProbes >= cnt-1 {
					w.closed = "timeout"
				}
				continue
			}
			if w.seen && ti.Last_ack_recv < w.lastAck {
				w.answeredN++
				if w.first == 0 {
					w.first = el
				}
			}
			w.lastAck, w.seen = ti.Last_ack_recv, true
		}
		if el >= d {
			break
		}
		time.Sleep(min(watchEvery, d-el))
	}
	for _, w := range ws {
		v := &Watch{Answered: w.answeredN, Unanswered: w.maxProbes, Closed: w.closed}
		switch {
		case w.closed != "":
			v.Outcome, v.AtS = Forgotten, w.at.Seconds()
		case w.answeredN > 0:
			v.Outcome, v.AtS = Alive, w.first.Seconds()
		case w.maxProbes > 0:
			v.Outcome = Unanswered
		default:
			v.Outcome = Quiet
		}
		r.Sockets[w.idx].Watch = v
	}
}
