package testenv

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NATLab is a client namespace behind a NAT namespace (masquerade, a
// short conntrack established timeout, no loose pickup, invalid packets
// dropped: a cloud NAT gateway) in front of a server namespace.
type NATLab struct {
	Client, NAT, Server *Netns
	// ServerIP is the server's address as the client dials it.
	ServerIP string
}

// NewNATLab builds one on subnets subnet and subnet+1 (see Connect); the
// NAT forgets a flow idle for idle (whole seconds).
func NewNATLab(t testing.TB, idle time.Duration, subnet int) *NATLab {
	t.Helper()
	l := &NATLab{Client: NewNetns(t), NAT: NewNetns(t), Server: NewNetns(t)}
	inside := Connect(t, l.NAT, l.Client, subnet)
	outside := Connect(t, l.Server, l.NAT, subnet+1)
	l.ServerIP = outside.A4
	h := l.Client.Netlink(t)
	link, err := h.LinkByName(inside.BName)
	if err != nil {
		t.Fatal(err)
	}
	gw := netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(inside.A4)}
	if err := h.RouteAdd(&gw); err != nil {
		t.Fatalf("client default route: %v", err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(l.NAT.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "kadiagtest", Family: nftables.TableFamilyINet})
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, expr.CtStateBitINVALID)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: fwd, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	oif := make([]byte, unix.IFNAMSIZ)
	copy(oif, outside.BName)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: oif},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in the NAT namespace: %v", err)
	}
	err = l.NAT.Do(func() error {
		for k, v := range map[string]string{
			"net/ipv4/ip_forward":                                "1",
			"net/netfilter/nf_conntrack_tcp_loose":               "0",
			"net/netfilter/nf_conntrack_tcp_timeout_established": strconv.Itoa(int(idle / time.Second)),
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("NAT sysctls: %v", err)
	}
	return l
}
