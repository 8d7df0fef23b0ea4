package simulate

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vishvananda/netns"
)

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

// wireStats is what the packets on one link prove.
type wireStats struct {
	packets   int
	probes    int // keepalive probes sent by the client
	probeAcks int // answers to them
	rsts      int // resets received by the client
	// expiredAt is when the hop behind this link first forgot a flow,
	// computed per flow from that flow's own last packet (last packet +
	// idle), not from conntrack's late DESTROY event.
	expiredAt *float64
	lastProbe float64
	events    []WireEvent // see timeline.go
}

// flowClock is one flow's last packet on a link, as the hop behind the link
// counts idleness.
type flowClock struct {
	last    time.Time
	closed  bool // a FIN or RST: conntrack's idle timeout no longer applies
	expired *time.Time
}

// analyze reads one link: the client's own (link 0: probes, answers,
// resets) or a hop's inside link further on, where only the expiry counts.
// Every packet not from the server's address is the client's side (a NAT
// hop before this link rewrote its source). A keepalive probe follows
// tshark's rule (tcp.analysis.keep_alive): 0 or 1 byte whose sequence
// number is one below the next expected, no SYN, FIN or RST.
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
	flows := map[dirKey]*flowClock{}  // keyed by the client's direction
	var order []*flowClock
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
		k := dirKey{src.String(), dst.String(), uint16(tcp.SrcPort), uint16(tcp.DstPort)}
		rev := dirKey{k.dst, k.src, k.dp, k.sp}
		fromClient := !src.Equal(serverIP4) && !src.Equal(serverIP6)
		ck := k
		if !fromClient {
			ck = rev
		}
		f := flows[ck]
		if f == nil {
			f = &flowClock{}
			flows[ck] = f
			order = append(order, f)
		}
		if !f.last.IsZero() && !f.closed && f.expired == nil && ts.Sub(f.last) > idle {
			at := f.last.Add(idle)
			f.expired = &at
		}
		f.last = ts
		if tcp.FIN || tcp.RST {
			f.closed = true
		}
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
	for _, f := range order {
		if !f.closed && f.expired == nil && end.Sub(f.last) > idle {
			at := f.last.Add(idle)
			f.expired = &at
		}
		if f.expired != nil {
			// Unrounded: hops forgetting within the same millisecond are
			// still told apart by which saw the flow's last packet first.
			at := f.expired.Sub(start).Seconds()
			if s.expiredAt == nil || at < *s.expiredAt {
				s.expiredAt = &at
			}
		}
	}
	return s
}
