package bpf

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestInfoRoundTrip(t *testing.T) {
	p := &Policy{Cgroup: "/sys/fs/cgroup/a b", CgroupID: 42, Holder: 7, Since: time.Unix(1700000000, 0),
		Settings: Settings{Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4, UserTimeout: 1500 * time.Millisecond}}
	got, ok := decodeInfo(encodeInfo(p))
	if !ok || got.Cgroup != p.Cgroup || got.CgroupID != 42 || got.Holder != 7 || got.Settings != p.Settings || !got.Since.Equal(p.Since) {
		t.Fatalf("round trip: %+v, want %+v", got, p)
	}
	if _, ok := decodeInfo(make([]byte, infoSize)); ok {
		t.Error("a zero record decoded")
	}
	if _, ok := decodeInfo([]byte{1, 2}); ok {
		t.Error("a short record decoded")
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", "/plain": "/plain", `/x\134y`: `/x\y`, `/trail\04`: `/trail\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestLookupField(t *testing.T) {
	if err := HaveBTF(); err != nil {
		testenv.SkipOrFail(t, "%v", err)
	}
	f, err := lookupField("bpf_iter__tcp", "sk_common")
	if err != nil || f.off != 8 {
		t.Errorf("bpf_iter__tcp.sk_common at %d (%v), want 8", f.off, err)
	}
	// A member of an anonymous struct inside sock_common.
	if _, err := lookupField("sock_common", "skc_dport"); err != nil {
		t.Error(err)
	}
	if _, err := lookupField("sock_common", "no_such_member"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a missing member: %v, want ErrUnsupported", err)
	}
	if _, err := lookupField("no_such_struct_kadiag", "x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a missing struct: %v, want ErrUnsupported", err)
	}
}

// TestMissingCapabilities: root lacks nothing; the error names what is
// missing and how to grant it, on one line. (The real refusals, as nobody
// with exactly some capabilities, are tested through the binary in
// cmd/kadiag TestFixCapabilities and deploy/kubernetes/fix.)
func TestMissingCapabilities(t *testing.T) {
	testenv.Privileged(t)
	if err := Missing("op", unix.CAP_BPF, unix.CAP_NET_ADMIN); err != nil {
		t.Fatalf("root lacks: %v", err)
	}
	e := &CapabilityError{Op: "attach", Missing: []string{"CAP_BPF", "CAP_NET_ADMIN"}}
	msg := e.Error()
	if !errors.Is(e, ErrCapability) || !strings.Contains(msg, "missing CAP_BPF, CAP_NET_ADMIN") || !strings.Contains(msg, "setcap cap_bpf,cap_net_admin+ep") || strings.Contains(msg, "\n") {
		t.Errorf("%q", msg)
	}
}

func TestHeldListsHeldPolicies(t *testing.T) {
	testenv.Privileged(t)
	root, ok := CgroupMount()
	if !ok {
		testenv.SkipOrFail(t, "no cgroup v2")
	}
	dir, err := os.MkdirTemp(root, "kadiag-held-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	p, err := Attach(dir, Settings{Idle: 9 * time.Second, Interval: 3 * time.Second, Count: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	held, err := Held()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range held {
		if h.Cgroup == dir {
			n++
			if h.Holder != os.Getpid() || h.Settings.Idle != 9*time.Second || h.Pinned != "" {
				t.Errorf("held %+v", h)
			}
		}
	}
	if n != 1 {
		t.Errorf("Held shows %d policies on %s, want 1: %+v", n, dir, held)
	}
	p.Close()
	held, _ = Held()
	for _, h := range held {
		if h.Cgroup == dir {
			t.Errorf("still held after Close: %+v", h)
		}
	}
}
