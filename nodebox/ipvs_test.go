package nodebox

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// IPVS timeouts set with ipvsadm --set in a test namespace (with one
// virtual service, as kube-proxy's IPVS mode has) are read back over
// netlink as ipvsadm -l --timeout shows them, and become the namespace's
// limit. On a kernel without IPVS, kadiag sees no IPVS where ipvsadm
// cannot initialise it either: the same answer from both.
func TestIPVSTimeout(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "ipvsadm", "nsenter")
	ns := testenv.NewNetns(t)
	oracle := func() (int, bool) {
		out, err := ns.Command("ipvsadm", "-l", "--timeout").CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "Protocol not available") {
				return 0, false
			}
			t.Fatalf("ipvsadm -l --timeout: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`Timeout \(tcp tcpfin udp\): (\d+) `).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("ipvsadm -l --timeout: %s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n, true
	}
	read := func() time.Duration {
		t.Helper()
		var d time.Duration
		if err := ns.Do(func() (err error) { d, err = ipvsTimeout(); return err }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if _, ok := oracle(); !ok {
		if d := read(); d != 0 {
			t.Fatalf("ipvsadm finds no IPVS in this kernel, kadiag reads a TCP timeout of %s", d)
		}
		n, err := open(ns.Path, Own)
		if err != nil || n.IPVS != 0 {
			t.Fatalf("namespace without IPVS: %+v %v", n, err)
		}
		t.Logf("this kernel has no IPVS (ipvsadm: Protocol not available); both agree")
		return
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := ns.Command("ipvsadm", args...).CombinedOutput(); err != nil {
			t.Fatalf("ipvsadm %v: %v\n%s", args, err, out)
		}
	}
	run("--set", "901", "120", "300")
	if d := read(); d != 0 {
		t.Fatalf("without a virtual service IPVS forgets nothing, kadiag reads %s", d)
	}
	run("-A", "-t", "198.18.97.1:80", "-s", "rr")
	want, _ := oracle()
	if d := read(); d != time.Duration(want)*time.Second || want != 901 {
		t.Fatalf("kadiag reads %s, ipvsadm -l --timeout says %ds (set 901)", d, want)
	}
	n, err := open(ns.Path, Own)
	if err != nil {
		t.Fatal(err)
	}
	v := &View{}
	if b := v.limit([]*Namespace{n}); b.idle != 901*time.Second || !strings.HasPrefix(b.name, "IPVS in net:[") {
		t.Fatalf("limit %+v, want IPVS's 901s", b)
	}
}
