package simulate

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tableName is the nftables table kadiag creates; it exists only inside the
// middlebox namespace, never in the host's ruleset.
const tableName = "kadiag"

// setupMiddlebox turns the namespace into a hop that forgets flows idle
// longer than hop.Idle: a NAT gateway (hop.NAT) or a box that only tracks. The expiry itself is conntrack's: the established
// timeout of this namespace only. What makes it faithful to a cloud NAT is
// what happens next: with nf_conntrack_tcp_loose=0 a late packet cannot
// re-create the flow, so it is invalid, and invalid packets are answered
// with RST (Reset) or dropped (Drop), never forwarded un-NATed.
func setupMiddlebox(ns netns.NsHandle, hop middlebox.Hop) error {
	idle, after := hop.Idle, hop.After
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables in middlebox netns: %w", err)
	}
	defer c.CloseLasting()
	t := c.AddTable(&nftables.Table{Name: tableName, Family: nftables.TableFamilyINet})

	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})

	if after == middlebox.Reset {
		// AWS NAT Gateway: the inside host's next packet of a forgotten flow
		// is answered with RST.
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: concat(
			ifname(expr.MetaKeyIIFNAME, insideIf), ctState(expr.CtStateBitINVALID), l4proto(unix.IPPROTO_TCP),
			[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: concat(
		ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop))})

	// The outside peer's packets for a forgotten flow are addressed to the
	// middlebox itself; without these rules its own stack would answer them
	// with RST. Neighbour discovery is never tracked, so it must pass first.
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: concat(
		l4proto(unix.IPPROTO_ICMPV6), verdict(expr.VerdictAccept))})
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: concat(
		ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop))})
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: concat(
		ifname(expr.MetaKeyIIFNAME, outsideIf), ctState(expr.CtStateBitNEW), verdict(expr.VerdictDrop))})

	if hop.NAT {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(
			ifname(expr.MetaKeyOIFNAME, outsideIf), []expr.Any{&expr.Masq{}})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables ruleset in middlebox netns: %w", err)
	}

	loose := "0"
	if after == middlebox.Heal {
		loose = "1"
	}
	// After the ruleset: its conntrack expressions make sure nf_conntrack is
	// loaded, and with it these per-namespace files exist.
	return writeSysctls(ns, [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/netfilter/nf_conntrack_tcp_loose", loose},
		{"net/netfilter/nf_conntrack_tcp_timeout_established", strconv.Itoa(int(idle / time.Second))},
	})
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func ctState(bit uint32) []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bit)
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: k}}
}
