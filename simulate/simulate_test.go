package simulate

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
)

// TestScenariosReset runs every scenario against an AWS-NAT-like middlebox
// and checks outcomes, the client's own view of its socket, and the probes
// and resets on the wire against tshark.
func TestScenariosReset(t *testing.T) {
	t.Parallel()
	pcap := filepath.Join(t.TempDir(), "reset.pcapng")
	before := snapshotHost(t)
	res := run(t, fast(Config{After: middlebox.Reset, Library: testLibrary(t), PcapPath: pcap}))
	snapshotHost(t).diff(t, before)
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	want := map[string]string{None: OutcomeTimeout, Preload: OutcomeOK, Sysctl: OutcomeTimeout, App: OutcomeOK, PreloadTooSlow: OutcomeReset}
	for name, outcome := range want {
		s := scenario(t, res, name)
		if s.Outcome != outcome || !s.Passed {
			t.Errorf("%s: outcome %s passed %v, want %s: %s", name, s.Outcome, s.Passed, outcome, s.Evidence)
		}
	}
	if !res.Passed() || res.Summary.Scenarios != 5 || res.Summary.Passed != 5 || res.Schema != "kadiag.simulate/v1" {
		t.Errorf("summary %+v schema %s", res.Summary, res.Schema)
	}

	// The client reads its socket back: the library turned keepalive on,
	// the sysctl only changed the timings of a socket that never probes.
	for name, sock := range map[string]string{
		None: "keepalive=0 idle=7200", Sysctl: "keepalive=0 idle=1 intvl=1 cnt=4",
		Preload: "keepalive=1 idle=1 intvl=1", App: "keepalive=1 idle=1 intvl=1 cnt=4",
		PreloadTooSlow: "keepalive=1 idle=4",
	} {
		if s := scenario(t, res, name); !strings.Contains(s.Socket, sock) {
			t.Errorf("%s: socket %q, want %q", name, s.Socket, sock)
		}
	}

	// Oracle: tshark's keep-alive analysis of the same packets.
	probes := countBy(tshark(t, pcap, "tcp.analysis.keep_alive && ip.src==198.18.1.2", "frame.interface_name"))
	for _, s := range res.Scenarios {
		if s.Probes != probes[s.Name] {
			t.Errorf("%s: %d probes, tshark counts %d", s.Name, s.Probes, probes[s.Name])
		}
	}
	if probes[Preload] < 2 || probes[App] < 2 || probes[None] != 0 || probes[Sysctl] != 0 {
		t.Errorf("probes per scenario %v", probes)
	}
	// The forgotten flow's first late packet (the slow library's probe) is
	// answered with a RST from the middlebox.
	rsts := countBy(tshark(t, pcap, "tcp.flags.reset==1 && ip.dst==198.18.1.2", "frame.interface_name"))
	if rsts[PreloadTooSlow] == 0 {
		t.Errorf("no RST to the client in %s: %v", PreloadTooSlow, rsts)
	}
	for _, s := range res.Scenarios {
		if len(s.Conntrack) == 0 || s.Conntrack[0].Event != "new" {
			t.Errorf("%s: conntrack timeline %+v", s.Name, s.Conntrack)
			continue
		}
		// The request goes out as the flow is established; then nothing
		// until the middlebox forgets it, 3 s later.
		if est := s.Conntrack[0].T; s.Outcome != OutcomeOK && (s.ExpiredS == nil || *s.ExpiredS < est+2.9 || *s.ExpiredS > est+3.5) {
			t.Errorf("%s: expired at %v, want about 3s after the flow began (%.3fs)", s.Name, s.ExpiredS, est)
		}
	}
}

// TestScenariosDrop: a GCP/Azure-like middlebox drops silently, so the slow
// library's probes go unanswered and no RST reaches the client.
func TestScenariosDrop(t *testing.T) {
	t.Parallel()
	pcap := filepath.Join(t.TempDir(), "drop.pcapng")
	res := run(t, fast(Config{After: middlebox.Drop, Library: testLibrary(t), PcapPath: pcap,
		Scenarios: []string{None, Preload, PreloadTooSlow}}))
	for name, outcome := range map[string]string{None: OutcomeTimeout, Preload: OutcomeOK, PreloadTooSlow: OutcomeTimeout} {
		if s := scenario(t, res, name); s.Outcome != outcome || !s.Passed {
			t.Errorf("%s: outcome %s, want %s: %s", name, s.Outcome, outcome, s.Evidence)
		}
	}
	if rsts := tshark(t, pcap, "tcp.flags.reset==1 && ip.dst==198.18.1.2", "frame.interface_name"); len(rsts) != 0 {
		t.Errorf("drop middlebox sent RSTs to the client: %v", rsts)
	}
	slow := scenario(t, res, PreloadTooSlow)
	if slow.Probes == 0 || slow.ProbeAcks != 0 {
		t.Errorf("too slow: %d probes, %d answered; want unanswered probes", slow.Probes, slow.ProbeAcks)
	}
}

// TestLooseMatters proves nf_conntrack_tcp_loose=0 is what makes the
// middlebox faithful: with Linux's default (1) the late probe re-creates the
// flow and the too-slow client survives.
func TestLooseMatters(t *testing.T) {
	t.Parallel()
	res := run(t, fast(Config{After: middlebox.Heal, Library: testLibrary(t), Scenarios: []string{PreloadTooSlow}}))
	s := scenario(t, res, PreloadTooSlow)
	if s.Outcome != OutcomeOK || s.ExpiredS == nil {
		t.Errorf("loose=1: outcome %s, expired %v; want the flow healed (ok after expiry): %s", s.Outcome, s.ExpiredS, s.Evidence)
	}
	news := 0
	for _, e := range s.Conntrack {
		if e.Event == "new" {
			news++
		}
	}
	if news < 2 {
		t.Errorf("loose=1: %d conntrack NEW events, want the flow re-created: %+v", news, s.Conntrack)
	}
}

// TestMiddleboxSysctls reads the middlebox's settings back from inside its
// namespace.
func TestMiddleboxSysctls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		after middlebox.AfterExpiry
		loose string
	}{{middlebox.Reset, "0"}, {middlebox.Drop, "0"}, {middlebox.Heal, "1"}} {
		l, err := NewLab(context.Background(), LabConfig{Hops: []middlebox.Hop{{Name: "mb", Idle: 7 * time.Second, After: tc.after, NAT: true}}})
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			"net/netfilter/nf_conntrack_tcp_loose":               tc.loose,
			"net/netfilter/nf_conntrack_tcp_timeout_established": "7",
			"net/ipv4/ip_forward":                                "1",
		} {
			if got, err := readSysctl(l.Hop(0), k); err != nil || got != want {
				t.Errorf("%s: %s = %q (%v), want %s", tc.after, k, got, err, want)
			}
		}
		if got, _ := readSysctl(l.Client(), "net/ipv4/ip_forward"); got != "0" {
			t.Errorf("client ip_forward %q", got)
		}
		l.Close()
	}
}

// TestIPv6 runs the lab over IPv6: the flow is NATed too.
func TestIPv6(t *testing.T) {
	t.Parallel()
	pcap := filepath.Join(t.TempDir(), "v6.pcapng")
	res := run(t, fast(Config{After: middlebox.Reset, IPv6: true, Scenarios: []string{None, App}, PcapPath: pcap}))
	if s := scenario(t, res, None); s.Outcome != OutcomeTimeout {
		t.Errorf("none over IPv6: %s", s.Evidence)
	}
	app := scenario(t, res, App)
	if app.Outcome != OutcomeOK {
		t.Errorf("app over IPv6: %s", app.Evidence)
	}
	if len(app.Conntrack) == 0 || !strings.Contains(app.Conntrack[0].Flow, "[fd00:6b61:1::2]") {
		t.Errorf("conntrack did not track the IPv6 flow: %+v", app.Conntrack)
	}
	if n := len(tshark(t, pcap, "tcp.analysis.keep_alive && ipv6.src==fd00:6b61:1::2", "frame.interface_name")); n != app.Probes || n == 0 {
		t.Errorf("IPv6 probes: tshark %d, kadiag %d", n, app.Probes)
	}
}

// TestServerKeepalive: the server's own probes refresh the middlebox too.
func TestServerKeepalive(t *testing.T) {
	t.Parallel()
	res := run(t, fast(Config{After: middlebox.Reset, ServerKeepalive: time.Second, Scenarios: []string{None}}))
	if s := scenario(t, res, None); s.Outcome != OutcomeOK || s.Passed {
		t.Errorf("server keepalive: outcome %s passed %v, want ok (and so not the expected failure): %s", s.Outcome, s.Passed, s.Evidence)
	}
}

// TestParallelLabs runs two labs with different middleboxes at the same
// time: a per-namespace setting leaking into the other lab would flip one.
func TestParallelLabs(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	var short, long *Result
	wg.Add(2)
	go func() {
		defer wg.Done()
		short = run(t, fast(Config{Idle: 2 * time.Second, Scenarios: []string{None}}))
	}()
	go func() { defer wg.Done(); long = run(t, fast(Config{Idle: 9 * time.Second, Scenarios: []string{None}})) }()
	wg.Wait()
	if short == nil || long == nil {
		t.FailNow()
	}
	if s := scenario(t, short, None); s.Outcome != OutcomeTimeout {
		t.Errorf("idle 2s lab: %s", s.Evidence)
	}
	if s := scenario(t, long, None); s.Outcome != OutcomeOK {
		t.Errorf("idle 10s lab (answer after 5s): %s", s.Evidence)
	}
}

func TestTimingsScale(t *testing.T) {
	c := Config{Idle: 350 * time.Second, Scale: 35, Library: []byte{0}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tm, _ := c.Timings()
	if tm.Idle != 10*time.Second || tm.KeepIdle != 2*time.Second || tm.SlowKeepIdle <= tm.Idle || tm.ResponseDelay <= tm.SlowKeepIdle {
		t.Errorf("scaled timings %+v", tm)
	}
	c = Config{Idle: 350 * time.Second, Library: []byte{0}}
	c.Validate()
	tm, _ = c.Timings()
	if tm.Idle != 350*time.Second || tm.ResponseDelay != 380*time.Second || tm.KeepIdle != 60*time.Second {
		t.Errorf("real timings %+v", tm)
	}
	for _, bad := range []Config{{Scale: 0.5}, {After: "maybe"}, {Scenarios: []string{"nope"}}, {Command: []string{"x"}, Expect: "perhaps"}, {KeepCnt: 200}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestPreloadWarning(t *testing.T) {
	if w := preloadWarning("sh"); w != "" {
		t.Errorf("sh: %s", w)
	}
	goBin, err := os.Executable() // this test binary is a Go program
	if err != nil {
		t.Fatal(err)
	}
	if w := preloadWarning(goBin); !strings.Contains(w, "Go program") {
		t.Errorf("Go test binary: %q", w)
	}
	testenv.Need(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "static.c")
	os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644)
	if out, err := exec.Command("gcc", "-static", "-o", filepath.Join(dir, "static"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static: %v\n%s", err, out)
	}
	if w := preloadWarning(filepath.Join(dir, "static")); !strings.Contains(w, "statically linked") {
		t.Errorf("static binary: %q", w)
	}
}
