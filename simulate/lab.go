package simulate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab's addresses. Every lab has namespaces of its own, so labs running
// side by side reuse them without meeting. All are in the benchmarking range
// 198.18.0.0/15 and the ULA prefix fd00:6b61::/32.
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

// ServerPort is the TCP port of the lab's HTTP server for a user command.
// Built-in scenario i of Scenarios listens on ServerPort+1+i, so the flows of
// parallel labs never share a 4-tuple in the one --pcap file: the kernel picks
// the clients' ports from a table shared by all namespaces, and two labs
// connecting at once can get the same one, which makes Wireshark's analysis
// run two flows together.
const ServerPort = 8080

// scenarioPort is the server port of a built-in scenario.
func scenarioPort(name string) int {
	return ServerPort + 1 + slices.Index(Scenarios, name)
}

// LabConfig describes one lab's middlebox.
type LabConfig struct {
	// Idle is the middlebox's idle timeout, whole seconds (conntrack's unit).
	Idle time.Duration
	// After is what the middlebox does with a forgotten flow's packets.
	After middlebox.AfterExpiry
}

// Lab is a client namespace, a middlebox namespace and a server namespace
// joined by two veth pairs. The namespaces are unnamed and held only by the
// Lab's file descriptors and the processes started in them.
type Lab struct {
	Client, Middlebox, Server netns.NsHandle
	cfg                       LabConfig
}

// NewLab builds a lab. On error nothing is left behind.
func NewLab(cfg LabConfig) (*Lab, error) {
	if cfg.Idle < time.Second {
		return nil, fmt.Errorf("middlebox idle %v: the kernel's minimum is 1s", cfg.Idle)
	}
	l := &Lab{cfg: cfg}
	var err error
	for _, p := range []*netns.NsHandle{&l.Client, &l.Middlebox, &l.Server} {
		*p = netns.None()
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for _, p := range []*netns.NsHandle{&l.Client, &l.Middlebox, &l.Server} {
		if *p, err = newNetns(); err != nil {
			return nil, err
		}
	}
	if err = l.wire(); err != nil {
		return nil, err
	}
	if err = setupMiddlebox(l.Middlebox, cfg.Idle, cfg.After); err != nil {
		return nil, err
	}
	return l, nil
}

// wire creates the veth pairs inside the lab's namespaces (never in the
// host's, not even for a moment), addresses them and routes the client
// through the middlebox.
func (l *Lab) wire() error {
	mb, err := netlink.NewHandleAt(l.Middlebox, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in middlebox netns: %w", err)
	}
	defer mb.Close()
	cl, err := netlink.NewHandleAt(l.Client, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in client netns: %w", err)
	}
	defer cl.Close()
	sv, err := netlink.NewHandleAt(l.Server, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in server netns: %w", err)
	}
	defer sv.Close()

	for _, v := range []struct {
		name, peer string
		peerNS     netns.NsHandle
	}{{insideIf, clientLinkIf, l.Client}, {outsideIf, serverLinkIf, l.Server}} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v.name}, PeerName: v.peer, PeerNamespace: netlink.NsFd(v.peerNS)}
		if err := mb.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s: %w", v.name, err)
		}
	}
	type side struct {
		h      *netlink.Handle
		ifname string
		ip4    net.IP
		ip6    net.IP
	}
	for _, s := range []side{
		{mb, insideIf, insideIP4, insideIP6}, {mb, outsideIf, outsideIP4, outsideIP6},
		{cl, clientLinkIf, clientIP4, clientIP6}, {sv, serverLinkIf, serverIP4, serverIP6},
	} {
		if err := upWithAddrs(s.h, s.ifname, s.ip4, s.ip6); err != nil {
			return err
		}
	}
	for _, h := range []*netlink.Handle{mb, cl, sv} {
		if err := upWithAddrs(h, "lo", nil, nil); err != nil {
			return err
		}
	}
	// A veth's queue is only switched from the "noop" discipline, which
	// drops everything, when the kernel's linkwatch work sees its carrier:
	// a SYN sent before that is lost and retried a second later, which
	// would shift every timing of the scenario.
	for _, w := range []struct {
		h    *netlink.Handle
		name string
	}{{mb, insideIf}, {mb, outsideIf}, {cl, clientLinkIf}, {sv, serverLinkIf}} {
		if err := waitOperUp(w.h, w.name); err != nil {
			return err
		}
	}
	eth, err := cl.LinkByName(clientLinkIf)
	if err != nil {
		return fmt.Errorf("client link: %w", err)
	}
	for _, gw := range []net.IP{insideIP4, insideIP6} {
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}
		if err := cl.RouteAdd(r); err != nil {
			return fmt.Errorf("client default route via %v: %w", gw, err)
		}
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
// and the middlebox's ruleset once the processes started in them are gone.
func (l *Lab) Close() error {
	var errs []error
	for _, p := range []*netns.NsHandle{&l.Client, &l.Middlebox, &l.Server} {
		if p.IsOpen() {
			errs = append(errs, p.Close())
			*p = netns.None()
		}
	}
	return errors.Join(errs...)
}

// BenchLabs builds and tears down n bare labs one after the other and
// returns the mean time of one: what `kadiag simulate` spends on its lab.
func BenchLabs(ctx context.Context, n int) (time.Duration, error) {
	if err := checkPrivilege(); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		l, err := NewLab(LabConfig{Idle: middlebox.DefaultIdle, After: middlebox.Reset})
		if err != nil {
			return 0, err
		}
		if err := l.Close(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}
