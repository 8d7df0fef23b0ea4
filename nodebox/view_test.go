package nodebox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
)

// A client behind a real NAT namespace (masquerade, established timeout
// 4 s): while the flow is tracked, the socket's conntrack entry is found
// by its tuple in the declared NAT namespace with the remaining time
// conntrack -L shows (within 1 s), and --max-idle auto judges it against
// that NAT's 4 s, naming it. Once the NAT has forgotten the idle flow, the
// socket, still ESTABLISHED for ss, is dead.
func TestConntrackRemainingAndDead(t *testing.T) {
	testenv.Privileged(t)
	const idle = 4 * time.Second
	testenv.Need(t, "conntrack", "ss", "nsenter", "python3")
	lab := testenv.NewNATLab(t, idle, 91)
	start(t, lab.Server, holdServer)
	pid, out := start(t, lab.Client, holdClient, lab.ServerIP)
	line, _ := out.ReadString('\n')
	sport, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("client port: %q", line)
	}
	o := Options{MaxIdle: MaxIdle{Auto: true}, ConntrackNetns: []string{lab.NAT.Path}}
	scan := func() *inspect.Socket {
		t.Helper()
		r, err := inspect.ScanPIDs([]int{pid}, inspect.Options{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := Read(o)
		if err != nil {
			t.Fatal(err)
		}
		v.Apply(r)
		for i := range r.Processes[0].Sockets {
			if sk := &r.Processes[0].Sockets[i]; strings.HasSuffix(sk.Local, ":"+strconv.Itoa(sport)) {
				if r.MaxIdleS != int(idle/time.Second) {
					t.Errorf("report max idle %ds, want the NAT's %s", r.MaxIdleS, idle)
				}
				return sk
			}
		}
		t.Fatalf("no socket with local port %d in %+v", sport, r.Processes)
		return nil
	}

	sk := scan()
	want := conntrackOracle(t, lab.NAT, sport)
	if sk.Conntrack == nil || sk.Conntrack.Netns != lab.NAT.Path {
		t.Fatalf("tracked flow: conntrack %+v, want an entry in %s", sk.Conntrack, lab.NAT.Path)
	}
	if d := sk.Conntrack.RemainingS - want; want < 0 || d < -1 || d > 1 {
		t.Errorf("remaining %ds, conntrack -L says %ds", sk.Conntrack.RemainingS, want)
	}
	wantReason := fmt.Sprintf("keepalive off; conntrack at %s forgets after 4s", lab.NAT.Path)
	if sk.Verdict != inspect.AtRisk || sk.Reason != wantReason {
		t.Errorf("tracked flow: %s %q, want at-risk %q", sk.Verdict, sk.Reason, wantReason)
	}

	// The NAT forgets the idle flow after 4 s; the kernel's conntrack
	// drops expired entries from dumps at once.
	if !testenv.WaitUntil(15*time.Second, func() bool { return conntrackOracle(t, lab.NAT, sport) < 0 }) {
		t.Fatal("conntrack -L still shows the flow after 15s")
	}
	time.Sleep(time.Second)
	sk = scan()
	if !ssEstablished(t, lab.Client, sport) {
		t.Fatal("ss no longer shows the client's socket ESTABLISHED: the test proves nothing")
	}
	if sk.Verdict != inspect.Dead || sk.Conntrack != nil || !strings.HasPrefix(sk.Reason, "the NAT at "+lab.NAT.Path+" forgot this flow") {
		t.Errorf("forgotten flow: %s %q conntrack %+v, want dead", sk.Verdict, sk.Reason, sk.Conntrack)
	}
}

// A flow that does not pass the declared NAT (the client talks to a
// server over a link of its own, not through the NAT) has no entry there,
// but it received within the NAT's timeout, so it is not dead: had it
// crossed the NAT, the entry would still be there. Without auto the
// verdict stays the fixed --max-idle's.
func TestDeclaredNATWithoutFlow(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3", "nsenter")
	lab := testenv.NewNATLab(t, 30*time.Second, 93)
	other := testenv.NewNetns(t)
	link := testenv.Connect(t, other, lab.Client, 95)
	start(t, other, holdServer)
	pid, out := start(t, lab.Client, holdClient, link.A4)
	out.ReadString('\n')
	r, err := inspect.ScanPIDs([]int{pid}, inspect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Read(Options{MaxIdle: MaxIdle{Declared: 350 * time.Second, DeclaredName: "350s"}, ConntrackNetns: []string{lab.NAT.Path}})
	if err != nil {
		t.Fatal(err)
	}
	v.Apply(r)
	for _, sk := range r.Processes[0].Sockets {
		if sk.Verdict == inspect.Dead || sk.Conntrack != nil {
			t.Errorf("a flow that never crossed the NAT: %s %q %+v", sk.Verdict, sk.Reason, sk.Conntrack)
		}
		if sk.Verdict != inspect.AtRisk || sk.Reason != "keepalive off" {
			t.Errorf("without auto the verdict stays Judge's: %s %q", sk.Verdict, sk.Reason)
		}
	}
	if r.MaxIdleS != 0 && r.MaxIdleS != 350 {
		t.Errorf("max idle %d changed without auto", r.MaxIdleS)
	}
}

func TestReadErrors(t *testing.T) {
	testenv.Privileged(t)
	if _, err := Read(Options{ConntrackNetns: []string{"/nonexistent"}}); !errors.Is(err, ErrNetns) {
		t.Errorf("missing path: %v", err)
	}
	if _, err := Read(Options{ConntrackNetns: []string{"/etc/hostname"}}); !errors.Is(err, ErrNetns) {
		t.Errorf("not a namespace: %v", err)
	}
}

func TestParseMaxIdle(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want MaxIdle
	}{
		{"auto", MaxIdle{Auto: true}},
		{"auto,aws-nat", MaxIdle{Auto: true, Declared: 350 * time.Second, DeclaredName: "aws-nat"}},
		{"auto,90s", MaxIdle{Auto: true, Declared: 90 * time.Second, DeclaredName: "90s"}},
		{"350s", MaxIdle{Declared: 350 * time.Second, DeclaredName: "350s"}},
		{"swarm-ipvs", MaxIdle{Declared: 900 * time.Second, DeclaredName: "swarm-ipvs"}},
	} {
		got, err := ParseMaxIdle(tt.in, middlebox.ParseIdle)
		if err != nil || got != tt.want {
			t.Errorf("ParseMaxIdle(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"auto,", "auto,soon", "autox", "soon"} {
		if _, err := ParseMaxIdle(bad, middlebox.ParseIdle); err == nil {
			t.Errorf("ParseMaxIdle(%q) accepted", bad)
		}
	}
}
