package path

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hop is one middlebox of a test chain: a NAT that forgets flows idle for
// Idle (conntrack's established timeout in its own namespace: the ground
// truth) and then does After, built as simulate's lab builds its middlebox
// (masquerade, nf_conntrack_tcp_loose=0 with invalid packets dropped or
// rejected with an RST toward the inside; loose=1 for heal).
type hop struct {
	Idle  time.Duration
	After middlebox.AfterExpiry
}

// chain is client — hop 1 — … — hop N — server on veth links of
// 198.18.<base+i>.0/24 and fd00:6b61:<base+i>::/64.
type chain struct {
	client, server *testenv.Netns
	hops           []*testenv.Netns
	server4        string
	server6        string
}

func newChain(t testing.TB, hops ...hop) *chain {
	const base = 100
	t.Helper()
	testenv.Privileged(t)
	c := &chain{client: testenv.NewNetns(t), server: testenv.NewNetns(t)}
	prev := c.client
	var prevLink testenv.Link
	for i, h := range hops {
		mb := testenv.NewNetns(t)
		c.hops = append(c.hops, mb)
		// mb is A (.1) of the link toward the client.
		l := testenv.Connect(t, mb, prev, base+i)
		waitUp(t, mb, l.AName)
		waitUp(t, prev, l.BName)
		if i == 0 {
			defaultRoute(t, c.client, l.BName, l.A4, l.A6)
		} else {
			defaultRoute(t, prev, l.BName, l.A4, l.A6)
		}
		if i > 0 {
			nat(t, prev, prevLink.AName, l.BName, hops[i-1])
		}
		prev, prevLink = mb, l
		_ = h
	}
	l := testenv.Connect(t, c.server, prev, base+len(hops))
	waitUp(t, c.server, l.AName)
	waitUp(t, prev, l.BName)
	nat(t, prev, prevLink.AName, l.BName, hops[len(hops)-1])
	c.server4, c.server6 = l.A4, l.A6
	return c
}

func waitUp(t testing.TB, ns *testenv.Netns, name string) {
	t.Helper()
	h := ns.Netlink(t)
	if !testenv.WaitUntil(5*time.Second, func() bool {
		link, err := h.LinkByName(name)
		return err == nil && link.Attrs().OperState == netlink.OperUp
	}) {
		t.Fatalf("link %s not up", name)
	}
}

func defaultRoute(t testing.TB, ns *testenv.Netns, ifname, gw4, gw6 string) {
	t.Helper()
	h := ns.Netlink(t)
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{gw4, gw6} {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatalf("route via %s: %v", gw, err)
		}
	}
}

// nat makes ns a NAT from inside to outside that forgets idle flows.
func nat(t testing.TB, ns *testenv.Netns, inside, outside string, h hop) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tb := c.AddTable(&nftables.Table{Name: "kadiagtest", Family: nftables.TableFamilyINet})
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: "input", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	if h.After == middlebox.Reset {
		c.AddRule(&nftables.Rule{Table: tb, Chain: fwd, Exprs: cat(
			ifIs(expr.MetaKeyIIFNAME, inside), ctInvalid(), proto(unix.IPPROTO_TCP),
			[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})})
	}
	c.AddRule(&nftables.Rule{Table: tb, Chain: fwd, Exprs: cat(ctInvalid(), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: in, Exprs: cat(proto(unix.IPPROTO_ICMPV6), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: in, Exprs: cat(ctInvalid(), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: in, Exprs: cat(ifIs(expr.MetaKeyIIFNAME, outside), ctNew(), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})})
	c.AddRule(&nftables.Rule{Table: tb, Chain: post, Exprs: cat(ifIs(expr.MetaKeyOIFNAME, outside), []expr.Any{&expr.Masq{}})})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables: %v", err)
	}
	loose := "0"
	if h.After == middlebox.Heal {
		loose = "1"
	}
	err = ns.Do(func() error {
		for _, kv := range [][2]string{
			{"net/ipv4/ip_forward", "1"},
			{"net/ipv6/conf/all/forwarding", "1"},
			{"net/netfilter/nf_conntrack_tcp_loose", loose},
			{"net/netfilter/nf_conntrack_tcp_timeout_established", strconv.Itoa(int(h.Idle / time.Second))},
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0); err != nil {
				return fmt.Errorf("sysctl %s: %w", kv[0], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifIs(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

func proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func ctBit(bit uint32) []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bit)
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctInvalid() []expr.Any { return ctBit(expr.CtStateBitINVALID) }
func ctNew() []expr.Any     { return ctBit(expr.CtStateBitNEW) }

// cut makes hop i drop every forwarded packet from now on: the path itself
// fails, which is no idle expiry.
func (c *chain) cut(t testing.TB, i int) {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(c.hops[i].Handle)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	tb := conn.AddTable(&nftables.Table{Name: "kadiagcut", Family: nftables.TableFamilyINet})
	drop := nftables.ChainPolicyDrop
	conn.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10), Policy: &drop})
	if err := conn.Flush(); err != nil {
		t.Fatalf("nftables cut: %v", err)
	}
}
