package simulate

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netns"
)

// ConntrackEvent is one event of the middlebox's conntrack table for the
// lab's flows, timed from the start of the scenario. DESTROY events of an
// expired flow arrive when conntrack's garbage collector finds it, up to a
// few seconds after the expiry itself.
type ConntrackEvent struct {
	at    time.Time
	T     float64 `json:"t_s"`
	Event string  `json:"event"`           // new, update, destroy
	State string  `json:"state,omitempty"` // the TCP state conntrack holds, e.g. ESTABLISHED
	Flow  string  `json:"flow,omitempty"`  // client address:port -> server address:port
}

var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// conntrackWatch records the middlebox's conntrack events.
type conntrackWatch struct {
	c      *conntrack.Conn
	events []ConntrackEvent
	ch     chan conntrack.Event
	done   chan struct{}
	errs   chan error
}

func watchConntrack(ns netns.NsHandle) (*conntrackWatch, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("conntrack in middlebox netns: %w", err)
	}
	ch := make(chan conntrack.Event, 256)
	errs, err := c.Listen(ch, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("conntrack events in middlebox netns: %w", err)
	}
	w := &conntrackWatch{c: c, done: make(chan struct{}), errs: errs}
	go func() {
		// A worker that fails hands its error over before it ends; take it
		// so the worker, and with it Close, never blocks.
		for {
			select {
			case <-errs:
			case <-w.done:
				return
			}
		}
	}()
	go func() {
		defer close(w.done)
		for ev := range ch {
			w.record(ev)
		}
	}()
	// The workers end on Close; ch is closed after them (see stop).
	w.ch = ch
	return w, nil
}

func (w *conntrackWatch) record(ev conntrack.Event) {
	if ev.Flow == nil || ev.Flow.TupleOrig.Proto.Protocol != 6 {
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

// stop ends the watch and returns the events timed from start. A worker
// blocked handing over an event is drained first, so Close cannot hang.
func (w *conntrackWatch) stop(start time.Time) []ConntrackEvent {
	closed := make(chan struct{})
	go func() {
		w.c.Close()
		close(closed)
	}()
	<-closed
	close(w.ch)
	<-w.done
	for i := range w.events {
		w.events[i].T = round3(w.events[i].at.Sub(start).Seconds())
	}
	return w.events
}

// capture records every packet on one interface of a namespace.
type capture struct {
	h    *pcapgo.EthernetHandle
	mu   sync.Mutex
	pkts []capturedPacket
	done chan struct{}
}

type capturedPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// maxPackets bounds a capture's memory: the lab's flows are small, a user
// command's may not be.
const maxPackets = 200000

func startCapture(ns netns.NsHandle, ifname string) (*capture, error) {
	c := &capture{done: make(chan struct{})}
	err := inNetns(ns, func() error {
		var err error
		c.h, err = pcapgo.NewEthernetHandle(ifname)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture on the client link: %w", err)
	}
	go func() {
		defer close(c.done)
		for {
			data, ci, err := c.h.ReadPacketData()
			if err != nil {
				return
			}
			c.mu.Lock()
			if len(c.pkts) < maxPackets {
				c.pkts = append(c.pkts, capturedPacket{ci, data})
			}
			c.mu.Unlock()
		}
	}()
	return c, nil
}

func (c *capture) stop() []capturedPacket {
	c.h.Close()
	<-c.done
	return c.pkts
}

// wireStats is what the packets on the client link prove.
type wireStats struct {
	packets   int
	probes    int // keepalive probes sent by the client
	probeAcks int // answers to them
	rsts      int // resets received by the client
	// expiredAt is when the middlebox forgot the flow, computed from the
	// rule (last packet + idle), not from conntrack's late DESTROY event.
	expiredAt *float64
	lastProbe float64
	events    []WireEvent // see timeline.go
}

// analyze reads the client link. A keepalive probe follows tshark's rule
// (tcp.analysis.keep_alive): 0 or 1 byte whose sequence number is one below
// the next expected, no SYN, FIN or RST.
func analyze(pkts []capturedPacket, start time.Time, idle time.Duration, end time.Time) wireStats {
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		payload gopacket.Payload
		decoded []gopacket.LayerType
		s       wireStats
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &tcp, &payload)
	parser.IgnoreUnsupported = true
	type dirKey struct {
		src, dst string
		sp, dp   uint16
	}
	next := map[dirKey]uint32{}
	pendingProbe := map[dirKey]bool{} // keyed by the probing direction
	closed := map[dirKey]bool{}       // keyed by the client's direction
	var last time.Time
	for _, p := range pkts {
		decoded = decoded[:0]
		if err := parser.DecodeLayers(p.data, &decoded); err != nil && len(decoded) == 0 {
			continue
		}
		var src, dst net.IP
		isTCP := false
		for _, t := range decoded {
			switch t {
			case layers.LayerTypeIPv4:
				src, dst = ip4.SrcIP, ip4.DstIP
			case layers.LayerTypeIPv6:
				src, dst = ip6.SrcIP, ip6.DstIP
			case layers.LayerTypeTCP:
				isTCP = true
			}
		}
		if !isTCP {
			continue
		}
		ts := p.ci.Timestamp
		if ts.After(end) {
			// What a dying client's socket sends on exit is not evidence.
			continue
		}
		s.packets++
		if !last.IsZero() && s.expiredAt == nil && ts.Sub(last) > idle {
			at := last.Add(idle).Sub(start).Seconds()
			s.expiredAt = &at
		}
		last = ts
		k := dirKey{src.String(), dst.String(), uint16(tcp.SrcPort), uint16(tcp.DstPort)}
		rev := dirKey{k.dst, k.src, k.dp, k.sp}
		fromClient := src.Equal(clientIP4) || src.Equal(clientIP6)
		n := uint32(len(tcp.Payload))
		if fromClient && (tcp.FIN || tcp.RST) {
			// Once the client hangs up, a middlebox's RST is the answer to
			// the goodbye, not what ended the wait.
			closed[k] = true
		}
		if tcp.RST {
			if !fromClient && !closed[rev] {
				s.rsts++
				s.mark(ts, start, WireRST, false)
			}
			continue
		}
		nx, seen := next[k]
		if fromClient && seen && !tcp.SYN && !tcp.FIN && n <= 1 && tcp.Seq == nx-1 {
			s.probes++
			s.mark(ts, start, WireProbe, true)
			s.lastProbe = ts.Sub(start).Seconds()
			pendingProbe[k] = true
			continue
		}
		if !fromClient && pendingProbe[rev] && n == 0 && tcp.ACK && !tcp.SYN && !tcp.FIN {
			s.probeAcks++
			s.mark(ts, start, WireProbeAck, false)
			pendingProbe[rev] = false
		}
		if n > 0 {
			s.mark(ts, start, WireData, fromClient)
		}
		end := tcp.Seq + n
		if tcp.SYN || tcp.FIN {
			end++
		}
		if !seen || int32(end-nx) > 0 {
			next[k] = end
		}
	}
	if !last.IsZero() && s.expiredAt == nil && end.Sub(last) > idle {
		at := last.Add(idle).Sub(start).Seconds()
		s.expiredAt = &at
	}
	return s
}
