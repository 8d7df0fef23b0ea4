package simulate

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
)

func forgot(h HopResult) string {
	if h.ForgotAtS == nil {
		return "kept"
	}
	return time.Duration(*h.ForgotAtS * float64(time.Second)).String()
}

func near(v *float64, want float64) bool { return v != nil && *v >= want-0.1 && *v <= want+0.6 }

// TestChainShorterHopForgetsFirst: --hop idle=8s,after=heal --hop
// idle=4s,after=drop. Without keepalive the 4 s hop forgets first (at 4 s,
// the 8 s hop at 8 s); with keepalive every 2 s both keep the flow; with
// keepalive every 6 s the flow dies at the second hop while the first keeps
// it. Every claim is checked against each hop's own conntrack table.
func TestChainShorterHopForgetsFirst(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	hops := []middlebox.Hop{
		{Name: "idle=8s,after=heal", Idle: 8 * time.Second, After: middlebox.Heal, NAT: true},
		{Name: "idle=4s,after=drop", Idle: 4 * time.Second, After: middlebox.Drop, NAT: true},
	}
	for _, tc := range []struct {
		name      string
		keep      time.Duration
		scenarios []string
	}{{"keepalive-2s", 2 * time.Second, []string{None, App}}, {"keepalive-6s", 6 * time.Second, []string{App}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			oc := newOracles(t)
			res := run(t, Config{Hops: hops, Scenarios: tc.scenarios, KeepIdle: tc.keep, KeepIntvl: tc.keep,
				ResponseDelay: 10 * time.Second, ResponseDelaySet: true, Timeout: 13 * time.Second, Hook: oc.hook})
			if len(res.Hops) != 2 || res.Hops[1].LabIdleS != 4 || res.IdleS != 4 || res.After != "drop" {
				t.Errorf("result's hops %+v, idle %v after %s: want the chain, shortest idle 4s drop", res.Hops, res.IdleS, res.After)
			}
			for _, sc := range res.Scenarios {
				t.Logf("%s: outcome %s, hop 1 %s, hop 2 %s, forgotten by %v", sc.Name, sc.Outcome, forgot(sc.Hops[0]), forgot(sc.Hops[1]), sc.ForgottenBy)
				oc.checkHops(t, sc, 10*time.Second)
				switch {
				case sc.Name == None:
					if sc.Outcome == OutcomeOK || sc.ForgottenBy == nil || *sc.ForgottenBy != 2 || !near(sc.Hops[1].ForgotAtS, 4) || !near(sc.Hops[0].ForgotAtS, 8) || !near(sc.ExpiredS, 4) {
						t.Errorf("none: want hop 2 to forget at 4s and hop 1 at 8s, the request to fail")
					}
				case tc.keep == 2*time.Second:
					if sc.Outcome != OutcomeOK || sc.ForgottenBy != nil || sc.Hops[0].ForgotAtS != nil || sc.Hops[1].ForgotAtS != nil || sc.ExpiredS != nil {
						t.Errorf("app, keepalive 2s: want both hops to keep the flow and the answer to arrive")
					}
				default:
					if sc.Outcome == OutcomeOK || sc.ForgottenBy == nil || *sc.ForgottenBy != 2 || !near(sc.Hops[1].ForgotAtS, 4) || sc.Hops[0].ForgotAtS != nil {
						t.Errorf("app, keepalive 6s: want the flow to die at hop 2 (at 4s) while hop 1 keeps it")
					}
				}
			}
		})
	}
}

// TestUserServerJDKTwoHops: a real Python server (--server, a slow handler)
// and the JDK 17 HttpClient through a 2-hop chain (instance conntrack that
// forgets after 5 s, silent, no NAT; then a NAT gateway that forgets after
// 3 s and resets): without keepalive the request fails and the report names
// hop 2 as the first to forget; with --preload it gets its 200 and no hop
// forgets. Checked against each hop's conntrack.
func TestUserServerJDKTwoHops(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "java", "javac", "python3")
	t.Parallel()
	src, err := filepath.Abs("testdata/Fetch.java")
	if err != nil {
		t.Fatal(err)
	}
	slow, err := filepath.Abs("testdata/slow.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	hops := []middlebox.Hop{
		{Name: "conntrack", Idle: 5 * time.Second, After: middlebox.Drop},
		{Name: "nat", Idle: 3 * time.Second, After: middlebox.Reset, NAT: true},
	}
	for _, tc := range []struct {
		name    string
		preload bool
		expect  string
	}{{"no-keepalive", false, ExpectFail}, {"preload", true, ExpectOK}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			oc := newOracles(t)
			var stdout, stderr bytes.Buffer
			res := run(t, Config{Hops: hops, Server: []string{"python3", slow, "{listen}", "7"},
				Command:     []string{"java", "-XX:-UsePerfData", "-cp", dir, "Fetch", "{url}", "15"},
				WithPreload: tc.preload, Library: testLibrary(t), KeepIdle: time.Second, KeepIntvl: time.Second,
				Expect: tc.expect, Timeout: 40 * time.Second, Stdout: &stdout, Stderr: &stderr, Hook: oc.hook})
			sc := scenario(t, res, "command")
			t.Logf("outcome %s, hop 1 %s, hop 2 %s, forgotten by %v\nstdout %s\nstderr %s", sc.Outcome, forgot(sc.Hops[0]), forgot(sc.Hops[1]), sc.ForgottenBy, stdout.String(), stderr.String())
			if !sc.Passed {
				t.Errorf("outcome %s, want %s", sc.Outcome, tc.expect)
			}
			oc.checkHops(t, sc, 7*time.Second)
			if tc.preload {
				if sc.ForgottenBy != nil || !strings.Contains(stdout.String(), "status 200") || sc.Probes == 0 {
					t.Errorf("with the library: forgotten by %v, %d probes, stdout %q: want the 200 through both hops", sc.ForgottenBy, sc.Probes, stdout.String())
				}
			} else if sc.ForgottenBy == nil || *sc.ForgottenBy != 2 || sc.Hops[0].ForgotAtS == nil || sc.Hops[1].ForgotAtS == nil ||
				*sc.Hops[1].ForgotAtS < 3 || math.Abs(*sc.Hops[0].ForgotAtS-*sc.Hops[1].ForgotAtS-2) > 0.1 {
				// Times count from the JVM's start: the request goes out a
				// second or two later; the two hops' clocks differ by their
				// idle timeouts.
				t.Errorf("without keepalive: want hop 2 to forget first (3s after the request), hop 1 two seconds later")
			}
			if !strings.Contains(stderr.String(), "GET / HTTP/1.1") {
				t.Errorf("the Python server's log does not show the request: %q", stderr.String())
			}
		})
	}
}

// TestUserServerNeverListens: a --server that exits, or listens elsewhere,
// is an error naming it, and nothing of it is left.
func TestUserServerNeverListens(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	_, err := Run(context.Background(), fast(Config{Server: []string{"sh", "-c", "exit 3"}, Command: []string{"true"}}))
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "{listen}") {
		t.Errorf("exiting server: %v, want ErrServer naming its exit", err)
	}
}

// TestConntrackStreamFailureNoted: when the kernel drops conntrack events
// (ENOBUFS: a receive buffer shrunk to the minimum and a burst of new
// flows), the scenario says so in a note, and the timeline goes on after
// it: the flow that follows is still recorded.
func TestConntrackStreamFailureNoted(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	var burst error
	cfg := fast(Config{Scenarios: []string{App}, conntrackRcvbuf: 1, Hook: func(_ context.Context, p Phase, s *Stage) {
		if p != PhaseSetup {
			return
		}
		// 4000 UDP flows through the hop, each one a NEW event.
		burst = inNetns(s.Lab.Client(), func() error {
			c, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return err
			}
			defer c.Close()
			for port := 20000; port < 24000; port++ {
				c.WriteToUDP([]byte{0}, &net.UDPAddr{IP: serverIP4, Port: port})
			}
			return nil
		})
	}})
	res := run(t, cfg)
	if burst != nil {
		t.Fatal(burst)
	}
	sc := scenario(t, res, App)
	if len(sc.Notes) == 0 || !strings.Contains(sc.Notes[0], "ENOBUFS") || !strings.Contains(sc.Notes[0], "resumed") {
		t.Fatalf("notes %q: want the lost events said, with ENOBUFS, and the stream resumed", sc.Notes)
	}
	if len(sc.Hops[0].Conntrack) == 0 || sc.Hops[0].Conntrack[len(sc.Hops[0].Conntrack)-1].T < 1 {
		t.Errorf("notes %q conntrack timeline %+v: want the scenario's own flow recorded after the burst", sc.Notes, sc.Hops[0].Conntrack)
	}
}
