package simulate

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// testLibrary is the bundled keepalive library (glibc: the bundled client
// and the test's clients are glibc programs).
func testLibrary(t *testing.T) []byte {
	t.Helper()
	lt, err := preload.Resolve(preload.Glibc, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := preload.Library(lt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fast is a lab timed for tests: the middlebox forgets after 3 s, the
// server answers after 5 s, keepalive probes every second. Two probes fit
// in the idle period, so one probe conntrack does not count (seen once in
// many runs on a loaded machine) does not decide the verdict.
func fast(c Config) Config {
	if c.Idle == 0 {
		c.Idle = 3 * time.Second
	}
	if !c.ResponseDelaySet {
		c.ResponseDelay, c.ResponseDelaySet = 5*time.Second, true
	}
	if c.KeepIdle == 0 {
		c.KeepIdle, c.KeepIntvl = time.Second, time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 8 * time.Second
	}
	return c
}

func run(t *testing.T, c Config) *Result {
	t.Helper()
	testenv.Privileged(t)
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func scenario(t *testing.T, r *Result, name string) ScenarioResult {
	t.Helper()
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %s in %+v", name, r.Scenarios)
	return ScenarioResult{}
}

// tshark runs the oracle on a capture and returns one line per packet.
func tshark(t *testing.T, pcap, filter string, fields ...string) []string {
	t.Helper()
	testenv.Need(t, "tshark")
	args := []string{"-r", pcap, "-Y", filter, "-T", "fields"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// countBy counts tshark lines by their first field (the interface name,
// which is the scenario).
func countBy(lines []string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[strings.Split(l, "\t")[0]]++
	}
	return m
}

// hostState is what a lab must never change on the host.
type hostState struct {
	links, ruleset, sysctls string
}

var hostSysctls = []string{
	"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
	"net/netfilter/nf_conntrack_tcp_loose", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/ipv4/tcp_keepalive_time", "net/ipv4/tcp_keepalive_intvl", "net/ipv4/tcp_keepalive_probes",
}

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	testenv.Need(t, "ip", "nft")
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	ruleset, err := exec.Command("nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	var sc []string
	for _, k := range hostSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		sc = append(sc, k+"="+strings.TrimSpace(string(v)))
	}
	return hostState{linkNames(string(links)), string(ruleset), strings.Join(sc, "\n")}
}

// linkNames keeps the names and flags of the host's links: counters and
// qdisc details may change on their own.
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 {
			names = append(names, f[1]+" "+f[2])
		}
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

func (h hostState) diff(t *testing.T, after hostState) {
	t.Helper()
	if h.links != after.links {
		t.Errorf("host links changed:\nbefore:\n%s\nafter:\n%s", h.links, after.links)
	}
	if h.ruleset != after.ruleset {
		t.Errorf("host nftables ruleset changed:\nbefore:\n%s\nafter:\n%s", h.ruleset, after.ruleset)
	}
	if h.sysctls != after.sysctls {
		t.Errorf("host sysctls changed:\nbefore:\n%s\nafter:\n%s", h.sysctls, after.sysctls)
	}
}

// netnsInodes lists every network namespace a process is in or holds an fd
// of, as the kernel names them ("net:[4026531840]").
func netnsInodes(t *testing.T) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if l, err := os.Readlink(p + "/ns/net"); err == nil {
			m[l] = true
		}
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "net:[") {
				m[l] = true
			}
		}
	}
	return m
}
