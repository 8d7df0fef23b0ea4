package path

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/simulate"
	vns "github.com/vishvananda/netns"
)

// hop is one middlebox of a test chain: a NAT that forgets flows idle for
// Idle (conntrack's established timeout in its own namespace: the ground
// truth) and then does After.
type hop struct {
	Idle  time.Duration
	After middlebox.AfterExpiry
}

// chain is simulate's lab: client — hop 1 — … — hop N — server, each hop a
// NAT of its own (masquerade; nf_conntrack_tcp_loose=0 with invalid packets
// dropped or rejected with an RST toward the inside; loose=1 for heal).
type chain struct {
	lab              *simulate.Lab
	client, server   vns.NsHandle
	server4, server6 string
}

func newChain(t testing.TB, hops ...hop) *chain {
	t.Helper()
	testenv.Privileged(t)
	var hs []middlebox.Hop
	for _, h := range hops {
		hs = append(hs, middlebox.Hop{Name: fmt.Sprintf("%v-%s", h.Idle, h.After), Idle: h.Idle, After: h.After, NAT: true})
	}
	l, err := simulate.NewLab(context.Background(), simulate.LabConfig{Hops: hs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &chain{lab: l, client: l.Client(), server: l.Server(),
		server4: l.ServerAddr(false).String(), server6: l.ServerAddr(true).String()}
}

// command runs a program inside ns (nsenter execs it, so the pid is the
// program's own).
func command(ns vns.NsHandle, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), int(ns)), "--", name}, args...)...)
}

// cut makes hop i drop every forwarded packet from now on: the path itself
// fails, which is no idle expiry.
func (c *chain) cut(t testing.TB, i int) {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(c.lab.Hop(i))))
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
