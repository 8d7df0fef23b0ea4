package simulate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab's addresses. Every lab has namespaces of its own, so labs running
// side by side reuse them without meeting. All are in the benchmarking range
// 198.18.0.0/15 and the ULA prefix fd00:6b61::/32. The client link is
// 198.18.1.0/24, the server link 198.18.2.0/24 whatever the number of hops,
// so the server's URL does not depend on the chain; the links between two
// hops are 198.18.(10+j).0/24.
var (
	clientIP4    = net.IPv4(198, 18, 1, 2)
	insideIP4    = net.IPv4(198, 18, 1, 1)
	outsideIP4   = net.IPv4(198, 18, 2, 1)
	serverIP4    = net.IPv4(198, 18, 2, 2)
	clientIP6    = net.ParseIP("fd00:6b61:1::2")
	insideIP6    = net.ParseIP("fd00:6b61:1::1")
	outsideIP6   = net.ParseIP("fd00:6b61:2::1")
	serverIP6    = net.ParseIP("fd00:6b61:2::2")
	clientLinkIf = "eth0" // the client's end of the client link; captured
	serverLinkIf = "eth0"
)

// MaxHops bounds a lab's chain (the links between hops are numbered in one
// byte of the address).
const MaxHops = 8

// link is one veth pair of a lab: link 0 joins the client and hop 1, link N
// hop N and the server.
type link struct {
	// left is toward the client, right toward the server; .1 and .2 are
	// their addresses' last byte on a /24 (IPv4) and /64 (IPv6).
	left4, right4 net.IP
	left6, right6 net.IP
}

// linkAddrs returns the addresses of link i of a lab of n hops.
func linkAddrs(i, n int) link {
	switch {
	case i == 0:
		return link{insideIP4, clientIP4, insideIP6, clientIP6}.flip()
	case i == n:
		return link{outsideIP4, serverIP4, outsideIP6, serverIP6}
	}
	b := byte(10 + i)
	return link{net.IPv4(198, 18, b, 1), net.IPv4(198, 18, b, 2),
		net.ParseIP(fmt.Sprintf("fd00:6b61:%d::1", 10+i)), net.ParseIP(fmt.Sprintf("fd00:6b61:%d::2", 10+i))}
}

// flip swaps the ends: on the client link the client (left) is .2, as it
// always was.
func (l link) flip() link { return link{l.right4, l.left4, l.right6, l.left6} }

// LabConfig describes a lab's chain of middleboxes.
type LabConfig struct {
	// Hops are the middleboxes between the client and the server, client
	// side first: one namespace each, with its own conntrack table, idle
	// timeout (whole seconds, conntrack's unit; not scaled here) and
	// behaviour after expiry. At least one, at most MaxHops.
	Hops []middlebox.Hop
}

// Lab is a client namespace, one namespace per middlebox hop and a server
// namespace, joined in series by veth pairs. The namespaces are unnamed and
// held only by the Lab's file descriptors and the processes started in
// them: a killed kadiag leaves nothing behind.
//
// Other packages (kadiag path, kadiag fix) use a Lab to test against a
// known chain: NewLab, then Client and Server to run code in the two ends
// (internal/netns.Do), ClientAddr and ServerAddr to dial, Close.
type Lab struct {
	client, server netns.NsHandle
	hops           []netns.NsHandle
	cfg            LabConfig
}

// ErrLab is returned (wrapped) for a LabConfig that cannot be built.
var ErrLab = errors.New("bad lab")

// NewLab builds a lab. On error (or when ctx ends) nothing is left behind.
func NewLab(ctx context.Context, cfg LabConfig) (*Lab, error) {
	if len(cfg.Hops) == 0 || len(cfg.Hops) > MaxHops {
		return nil, fmt.Errorf("%w: %d hops (use 1 to %d)", ErrLab, len(cfg.Hops), MaxHops)
	}
	for i, h := range cfg.Hops {
		if h.Idle < time.Second {
			return nil, fmt.Errorf("%w: hop %d idle %v: the kernel's minimum is 1s", ErrLab, i+1, h.Idle)
		}
		switch h.After {
		case middlebox.Reset, middlebox.Drop, middlebox.Heal:
		default:
			return nil, fmt.Errorf("%w: hop %d after %q (use reset, drop or heal)", ErrLab, i+1, h.After)
		}
	}
	l := &Lab{cfg: cfg, client: netns.None(), server: netns.None(), hops: make([]netns.NsHandle, len(cfg.Hops))}
	for i := range l.hops {
		l.hops[i] = netns.None()
	}
	var err error
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for _, p := range l.all() {
		if err = ctx.Err(); err != nil {
			return nil, err
		}
		if *p, err = newNetns(); err != nil {
			return nil, err
		}
	}
	if err = l.wire(); err != nil {
		return nil, err
	}
	for i, h := range cfg.Hops {
		if err = ctx.Err(); err != nil {
			return nil, err
		}
		if err = setupMiddlebox(l.hops[i], h); err != nil {
			return nil, fmt.Errorf("hop %d (%s): %w", i+1, h.Name, err)
		}
	}
	return l, nil
}

// all is every namespace of the lab, client first.
func (l *Lab) all() []*netns.NsHandle {
	out := []*netns.NsHandle{&l.client}
	for i := range l.hops {
		out = append(out, &l.hops[i])
	}
	return append(out, &l.server)
}

// Client is the client namespace.
func (l *Lab) Client() netns.NsHandle { return l.client }

// Server is the server namespace.
func (l *Lab) Server() netns.NsHandle { return l.server }

// Hops is the number of middleboxes.
func (l *Lab) Hops() int { return len(l.hops) }

// Hop is the namespace of middlebox i (0 is next to the client).
func (l *Lab) Hop(i int) netns.NsHandle { return l.hops[i] }

// HopConfig is middlebox i as configured.
func (l *Lab) HopConfig(i int) middlebox.Hop { return l.cfg.Hops[i] }

// ClientAddr is the client's address on its link.
func (l *Lab) ClientAddr(ipv6 bool) net.IP { return pick(ipv6, clientIP4, clientIP6) }

// ServerAddr is the server's address, the one clients dial.
func (l *Lab) ServerAddr(ipv6 bool) net.IP { return pick(ipv6, serverIP4, serverIP6) }

func pick(ipv6 bool, v4, v6 net.IP) net.IP {
	if ipv6 {
		return v6
	}
	return v4.To4()
}

// Interface names inside a hop's namespace.
const (
	insideIf  = "inside"  // toward the client
	outsideIf = "outside" // toward the server
)

// wire creates the veth pairs inside the lab's namespaces (never in the
// host's, not even for a moment), addresses them and routes every namespace
// through the chain.
func (l *Lab) wire() error {
	ns := l.all()
	handles := make([]*netlink.Handle, len(ns))
	defer func() {
		for _, h := range handles {
			if h != nil {
				h.Close()
			}
		}
	}()
	for i, p := range ns {
		h, err := netlink.NewHandleAt(*p, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink in lab netns: %w", err)
		}
		handles[i] = h
	}
	n := len(l.hops)
	// Namespaces are numbered client 0, hops 1..n, server n+1. Link i joins
	// namespace i (its left end: leftIf, toward the server) and namespace
	// i+1 (its right end: rightIf, toward the client).
	leftIf := func(i int) string { // in namespace i
		if i == 0 {
			return clientLinkIf
		}
		return outsideIf
	}
	rightIf := func(i int) string { // in namespace i+1
		if i == n {
			return serverLinkIf
		}
		return insideIf
	}
	for i := 0; i <= n; i++ {
		// Created in the hop's namespace (as the one-hop lab always did),
		// the peer moved straight into its neighbour's.
		own, peer, peerNS, h := rightIf(i), leftIf(i), *ns[i], handles[i+1]
		if i == n {
			own, peer, peerNS, h = leftIf(i), rightIf(i), *ns[i+1], handles[i]
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: own}, PeerName: peer, PeerNamespace: netlink.NsFd(peerNS)}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s: %w", own, err)
		}
	}
	for i := 0; i <= n; i++ {
		a := linkAddrs(i, n)
		if err := upWithAddrs(handles[i], leftIf(i), a.left4, a.left6); err != nil {
			return err
		}
		if err := upWithAddrs(handles[i+1], rightIf(i), a.right4, a.right6); err != nil {
			return err
		}
	}
	for _, h := range handles {
		if err := upWithAddrs(h, "lo", nil, nil); err != nil {
			return err
		}
	}
	// A veth's queue is only switched from the "noop" discipline, which
	// drops everything, when the kernel's linkwatch work sees its carrier:
	// a SYN sent before that is lost and retried a second later, which
	// would shift every timing of the scenario.
	for i := 0; i <= n; i++ {
		if err := waitOperUp(handles[i], leftIf(i)); err != nil {
			return err
		}
		if err := waitOperUp(handles[i+1], rightIf(i)); err != nil {
			return err
		}
	}
	// Routes: every namespace but the server sends toward the server via its
	// right neighbour; every namespace right of link 1 reaches the subnets
	// further left via its left neighbour (a hop without NAT passes the
	// client's own address on, so the server must route back to it).
	for i := 0; i <= n+1; i++ {
		if i <= n {
			a := linkAddrs(i, n)
			for _, gw := range []net.IP{a.right4, a.right6} {
				if err := routeVia(handles[i], leftIf(i), nil, gw); err != nil {
					return err
				}
			}
		}
		if i < 2 {
			continue
		}
		gw := linkAddrs(i-1, n)
		for j := 0; j < i-1; j++ {
			a := linkAddrs(j, n)
			for _, r := range []struct{ ip, gw net.IP }{{a.left4, gw.left4}, {a.left6, gw.left6}} {
				if err := routeVia(handles[i], rightIf(i-1), subnet(r.ip), r.gw); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// subnet is the lab prefix an address is on: /24 (IPv4), /64 (IPv6).
func subnet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4.Mask(net.CIDRMask(24, 32)), Mask: net.CIDRMask(24, 32)}
	}
	return &net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}
}

// routeVia adds a route to dst (nil: the default route) through gw.
func routeVia(h *netlink.Handle, ifname string, dst *net.IPNet, gw net.IP) error {
	lk, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	r := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: dst, Gw: gw}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("route to %v via %v: %w", dst, gw, err)
	}
	return nil
}

// waitOperUp waits until the link's operational state is up.
func waitOperUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
		if link.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s: not up after 5s (state %s)", name, link.Attrs().OperState)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func upWithAddrs(h *netlink.Handle, name string, ip4, ip6 net.IP) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	for _, a := range []struct {
		ip   net.IP
		bits int
	}{{ip4, 24}, {ip6, 64}} {
		if a.ip == nil {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.ip, Mask: net.CIDRMask(a.bits, len(a.ip.To16())*8)}}
		if a.ip.To4() != nil {
			addr.IPNet.IP = a.ip.To4()
			addr.IPNet.Mask = net.CIDRMask(a.bits, 32)
		} else {
			// A tentative address cannot be used for a second or two.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("address %v on %s: %w", a.ip, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	return nil
}

// ServerURL is the lab server's URL as a user command dials it.
func ServerURL(ipv6 bool) string { return serverURL(ipv6, ServerPort) }

func serverURL(ipv6 bool, port int) string {
	if ipv6 {
		return fmt.Sprintf("http://[%s]:%d/", serverIP6, port)
	}
	return fmt.Sprintf("http://%s:%d/", serverIP4, port)
}

// Close releases the lab's namespaces; the kernel removes them, their links
// and the hops' rulesets once the processes started in them are gone.
func (l *Lab) Close() error {
	var errs []error
	for _, p := range l.all() {
		if p.IsOpen() {
			errs = append(errs, p.Close())
			*p = netns.None()
		}
	}
	return errors.Join(errs...)
}

// BenchLabs builds and tears down n bare labs of these hops one after the
// other and returns the mean time of one: what `kadiag simulate` spends on
// its lab.
func BenchLabs(ctx context.Context, n int, hops []middlebox.Hop) (time.Duration, error) {
	if err := checkPrivilege(); err != nil {
		return 0, err
	}
	if len(hops) == 0 {
		hops = []middlebox.Hop{{Name: "middlebox", Idle: middlebox.DefaultIdle, After: middlebox.Reset, NAT: true}}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		l, err := NewLab(ctx, LabConfig{Hops: hops})
		if err != nil {
			return 0, err
		}
		if err := l.Close(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}
