// Package testenv gives kadiag's tests real network namespaces, veth links
// and tools, and enforces the project's rule for privileged tests: they skip
// on a developer's unprivileged machine and fail under CI=true.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI, where nothing may be skipped for
// lack of privilege or tools.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test, or fails it under CI=true.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true: %s (privileged tests must run in CI)", msg)
	}
	t.Skip(msg)
}

// Privileged requires root (namespaces, nftables, packet capture).
func Privileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root")
	}
}

// Need requires the named commands on PATH (oracles such as ss or tshark).
// `make test` installs them; a missing one is a skip locally and a failure in CI.
func Need(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			SkipOrFail(t, "needs %s on PATH (run 'make deps')", c)
		}
	}
}

// Netns is a named network namespace (/run/netns/NAME) made for one test and
// deleted when the test ends.
type Netns struct {
	Name   string
	Path   string
	Handle netns.NsHandle
}

var seq atomic.Int64

// NewNetns creates a fresh network namespace with its loopback up. Names are
// unique per process so parallel tests and parallel test binaries never meet.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	Privileged(t)
	name := fmt.Sprintf("kadiag-t%d-%d", os.Getpid(), seq.Add(1))
	h, err := knetns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	n := &Netns{Name: name, Path: "/run/netns/" + name, Handle: h}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	nh := n.Netlink(t)
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("netns %s: loopback up: %v", name, err)
	}
	return n
}

// Do runs f on a fresh OS thread inside the namespace (internal/netns.Do).
func (n *Netns) Do(f func() error) error { return knetns.Do(n.Handle, f) }

// Netlink returns a netlink handle working inside the namespace.
func (n *Netns) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Command returns a command that runs inside the namespace (through nsenter,
// which execs the program, so the pid is the program's own).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...)
}

// Link joins two namespaces with a veth pair on subnet 198.18.<subnet>.0/24
// and fd00:6b61:<subnet>::/64 (a ULA prefix): a gets .1 and ::1, b gets .2
// and ::2. It returns b's and a's addresses for tests to dial.
type Link struct {
	A4, B4 string // "198.18.N.1", "198.18.N.2"
	A6, B6 string // "fd00:6b61:N::1", "fd00:6b61:N::2"
	AName  string // interface name in a
	BName  string // interface name in b
}

// Connect creates the veth pair between a and b. subnet must be 0–255 and
// unique among the links of one test.
func Connect(t testing.TB, a, b *Netns, subnet int) Link {
	t.Helper()
	l := Link{
		A4: fmt.Sprintf("198.18.%d.1", subnet), B4: fmt.Sprintf("198.18.%d.2", subnet),
		A6: fmt.Sprintf("fd00:6b61:%x::1", subnet), B6: fmt.Sprintf("fd00:6b61:%x::2", subnet),
		AName: fmt.Sprintf("kt%da", subnet), BName: fmt.Sprintf("kt%db", subnet),
	}
	ha, hb := a.Netlink(t), b.Netlink(t)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.AName},
		PeerName:      l.BName,
		PeerNamespace: netlink.NsFd(b.Handle),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s/%s: %v", l.AName, l.BName, err)
	}
	up := func(h *netlink.Handle, name, v4, v6 string) {
		link, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		for _, cidr := range []string{v4 + "/24", v6 + "/64"} {
			addr, err := netlink.ParseAddr(cidr)
			if err != nil {
				t.Fatal(err)
			}
			// No duplicate address detection: a tentative IPv6 address cannot be
			// bound for a second or two, which would make tests flaky.
			addr.Flags = unix.IFA_F_NODAD
			if err := h.AddrAdd(link, addr); err != nil {
				t.Fatalf("addr %s on %s: %v", cidr, name, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatalf("link %s up: %v", name, err)
		}
	}
	up(ha, l.AName, l.A4, l.A6)
	up(hb, l.BName, l.B4, l.B6)
	return l
}
