package simulate

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ConntrackEvent is one event of a hop's conntrack table for the lab's
// flows, timed from the start of the scenario. DESTROY events of an expired
// flow arrive when conntrack's garbage collector finds it, up to a few
// seconds after the expiry itself.
type ConntrackEvent struct {
	at    time.Time
	T     float64 `json:"t_s"`
	Event string  `json:"event"`           // new, update, destroy
	State string  `json:"state,omitempty"` // the TCP state conntrack holds, e.g. ESTABLISHED
	Flow  string  `json:"flow,omitempty"`  // client address:port -> server address:port
}

var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// conntrackWatch records one hop's conntrack events. When the event stream
// fails (ENOBUFS: the kernel's queue overflowed because the listener fell
// behind), it says so in a note with the moment and subscribes again, so a
// timeline is never cut short without a word.
type conntrackWatch struct {
	ns     netns.NsHandle
	rcvbuf int // the socket's receive buffer; 0: the system's default
	events []ConntrackEvent
	faults []streamFault
	quit   chan struct{}
	done   chan struct{}
}

// streamFault is a failure of the event stream, and whether (and when) the
// watch got it back.
type streamFault struct {
	at, resumed time.Time
	err         error
	count       int // outages merged into this one
}

// subscription is one netlink socket listening for conntrack events.
type subscription struct {
	c    *conntrack.Conn
	ch   chan conntrack.Event
	errs chan error
}

func watchConntrack(ns netns.NsHandle, rcvbuf int) (*conntrackWatch, error) {
	w := &conntrackWatch{ns: ns, rcvbuf: rcvbuf, quit: make(chan struct{}), done: make(chan struct{})}
	s, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	go w.loop(s)
	return w, nil
}

func (w *conntrackWatch) subscribe() (*subscription, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(w.ns)})
	if err != nil {
		return nil, fmt.Errorf("conntrack in middlebox netns: %w", err)
	}
	if w.rcvbuf > 0 {
		if err := c.SetReadBuffer(w.rcvbuf); err != nil {
			c.Close()
			return nil, fmt.Errorf("conntrack events buffer: %w", err)
		}
	}
	ch := make(chan conntrack.Event, 256)
	errs, err := c.Listen(ch, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("conntrack events in middlebox netns: %w", err)
	}
	return &subscription{c, ch, errs}, nil
}

func (w *conntrackWatch) loop(s *subscription) {
	defer close(w.done)
	for {
		select {
		case ev := <-s.ch:
			w.record(ev)
		case err := <-s.errs:
			f := streamFault{at: time.Now(), err: err, count: 1}
			w.close(s)
			// A listener that overflowed once will again: give the next one
			// a larger buffer (SO_RCVBUF is capped by rmem_max for us too,
			// unless forced; conntrack.Conn sets it plainly).
			w.rcvbuf = max(w.rcvbuf*4, 1<<20)
			for s = nil; s == nil; {
				var err error
				if s, err = w.subscribe(); err != nil {
					select {
					case <-w.quit:
						w.faults = append(w.faults, f)
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			f.resumed = time.Now()
			// Outages one after the other are one gap in the timeline.
			if n := len(w.faults); n > 0 && f.at.Sub(w.faults[n-1].resumed) < time.Second {
				w.faults[n-1].resumed = f.resumed
				w.faults[n-1].count++
			} else {
				w.faults = append(w.faults, f)
			}
		case <-w.quit:
			w.close(s)
			return
		}
	}
}

// close ends a subscription. Its worker may be blocked handing over an
// event or an error: keep taking them until Close has waited for it.
func (w *conntrackWatch) close(s *subscription) {
	closed := make(chan struct{})
	go func() {
		s.c.Close()
		close(closed)
	}()
	for {
		select {
		case ev := <-s.ch:
			w.record(ev)
		case <-s.errs:
		case <-closed:
			for {
				select {
				case ev := <-s.ch:
					w.record(ev)
				default:
					return
				}
			}
		}
	}
}

func (w *conntrackWatch) record(ev conntrack.Event) {
	if ev.Flow == nil || ev.Flow.TupleOrig.Proto.Protocol != unix.IPPROTO_TCP {
		return
	}
	e := ConntrackEvent{at: time.Now()}
	switch ev.Type {
	case conntrack.EventNew:
		e.Event = "new"
	case conntrack.EventUpdate:
		e.Event = "update"
	case conntrack.EventDestroy:
		e.Event = "destroy"
	default:
		return
	}
	if tcp := ev.Flow.ProtoInfo.TCP; tcp != nil && int(tcp.State) < len(tcpStates) {
		e.State = tcpStates[tcp.State]
	}
	o := ev.Flow.TupleOrig
	e.Flow = fmt.Sprintf("%s -> %s",
		net.JoinHostPort(o.IP.SourceAddress.String(), fmt.Sprint(o.Proto.SourcePort)),
		net.JoinHostPort(o.IP.DestinationAddress.String(), fmt.Sprint(o.Proto.DestinationPort)))
	w.events = append(w.events, e)
}

// stop ends the watch and returns the events timed from start, and one
// note per failure of the event stream.
func (w *conntrackWatch) stop(start time.Time) ([]ConntrackEvent, []string) {
	close(w.quit)
	<-w.done
	for i := range w.events {
		w.events[i].T = round3(w.events[i].at.Sub(start).Seconds())
	}
	if w.events == nil {
		w.events = []ConntrackEvent{}
	}
	var notes []string
	for _, f := range w.faults {
		why := f.err.Error()
		if errors.Is(f.err, unix.ENOBUFS) {
			why = "the kernel dropped events because kadiag read them too slowly (ENOBUFS)"
		}
		n := fmt.Sprintf("conntrack events lost from %.3fs: %s", f.at.Sub(start).Seconds(), why)
		if f.count > 1 {
			n += fmt.Sprintf(" (%d times)", f.count)
		}
		if f.resumed.IsZero() {
			n += "; the timeline ends there"
		} else {
			n += fmt.Sprintf("; resumed at %.3fs, events between are missing", f.resumed.Sub(start).Seconds())
		}
		notes = append(notes, n)
	}
	return w.events, notes
}
