package nodebox

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tuple is one direction of a TCP flow as conntrack keys it.
type tuple struct {
	src, dst netip.AddrPort
}

// entry is what a conntrack entry says about a flow.
type entry struct {
	remaining time.Duration
}

// dumpFlows reads the TCP entries of the namespace's conntrack table
// (ti-mo/conntrack over ctnetlink), indexed by both tuples: a socket on
// the inside of a source NAT finds its entry by the original tuple, one on
// the inside of a destination NAT (a pod behind a Service) by the reply
// tuple, the translated one.
func dumpFlows(h vns.NsHandle) (map[tuple]entry, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(h)})
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack dump: %w", err)
	}
	out := make(map[tuple]entry, 2*len(flows))
	for _, f := range flows {
		if f.TupleOrig.Proto.Protocol != unix.IPPROTO_TCP {
			continue
		}
		e := entry{remaining: time.Duration(f.Timeout) * time.Second}
		for _, t := range []conntrack.Tuple{f.TupleOrig, f.TupleReply} {
			out[tuple{
				src: netip.AddrPortFrom(t.IP.SourceAddress.Unmap(), t.Proto.SourcePort),
				dst: netip.AddrPortFrom(t.IP.DestinationAddress.Unmap(), t.Proto.DestinationPort),
			}] = e
		}
	}
	return out, nil
}

// lookup finds the entry of the flow a socket with these addresses
// belongs to, in either direction.
func (n *Namespace) lookup(local, remote netip.AddrPort) (entry, bool) {
	e, ok := n.flows[tuple{src: local, dst: remote}]
	return e, ok
}
