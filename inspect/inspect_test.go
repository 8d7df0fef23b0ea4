package inspect

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// lab is a client netns and a server netns joined by veth, with a server
// that accepts and holds every connection on port 8080 (IPv4 and IPv6).
type lab struct {
	client, server *testenv.Netns
	link           testenv.Link // server has A (.1), client has B (.2)
	serverProc     *started
}

func newLab(t testing.TB, subnet int) *lab {
	t.Helper()
	testenv.Privileged(t)
	testenv.Need(t, "nsenter")
	l := &lab{client: testenv.NewNetns(t), server: testenv.NewNetns(t)}
	l.link = testenv.Connect(t, l.server, l.client, subnet)
	l.serverProc = start(t, helper(l.server, "serve,[::]:8080"))
	return l
}

// sysctl writes a keepalive sysctl inside n.
func sysctl(t *testing.T, n *testenv.Netns, name string, v int) {
	t.Helper()
	err := n.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/"+name, []byte(fmt.Sprint(v)), 0)
	})
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v", name, n.Name, err)
	}
}

func byFD(p Process) map[int]Socket {
	m := map[int]Socket{}
	for _, s := range p.Sockets {
		m[s.FD] = s
	}
	return m
}

// checkExact compares kadiag's values with what getsockopt read inside the process.
func checkExact(t *testing.T, sk Socket, h helperSocket) {
	t.Helper()
	k := sk.Keepalive
	if !k.Source.IsExact() {
		t.Errorf("fd %d (%s): source %q, want bpf or getsockopt", h.FD, h.Spec, k.Source)
	}
	if k.Enabled != (h.Keepalive != 0) || k.IdleS != h.Idle || k.IntervalS != h.Intvl || k.Count != h.Cnt || k.UserTimeoutMs != h.UserTimeout {
		t.Errorf("fd %d (%s): kadiag %+v, getsockopt in process %+v", h.FD, h.Spec, k, h)
	}
}

func TestScanPIDsAgainstGetsockoptAndSS(t *testing.T) {
	l := newLab(t, 61)
	// Sysctls of the client's namespace, distinct from the host's, are what
	// a socket uses for options it did not set.
	sysctl(t, l.client, "tcp_keepalive_time", 600)
	sysctl(t, l.client, "tcp_keepalive_intvl", 30)
	sysctl(t, l.client, "tcp_keepalive_probes", 5)
	s4 := l.link.A4 + ":8080"
	s6 := "[" + l.link.A6 + "]:8080"
	client := start(t, helper(l.client,
		"dial4,"+s4,         // 0 keepalive off
		"dial4,"+s4+",ka=1", // 1 on, namespace defaults (600 s)
		"dial6,"+s6+",ka=1,idle=30,intvl=5,cnt=3",                 // 2 custom
		"dial6,"+s6+",ka=1,idle=20,intvl=2,cnt=4,ut=5000",         // 3 with TCP_USER_TIMEOUT
		"listen4,0.0.0.0:9090,ka=1,idle=45,intvl=7,cnt=2,ut=3000", // 4 listener handing on keepalive
		"listen6,[::]:9091",                  // 5 listener without
		"dial4,127.0.0.1:9090,ka=1,idle=100", // 6 loopback peer
		"dial6,["+l.link.B6+"]:9091",         // 7 the host's own address
	))
	h := client.sockets

	before := ssDump(t, l.client)
	r, err := ScanPIDs([]int{client.pid, l.serverProc.pid}, Options{})
	after := ssDump(t, l.client)
	if err != nil {
		t.Fatal(err)
	}
	if r.Schema != Schema || r.MaxIdleS != 350 || len(r.Processes) != 2 {
		t.Fatalf("report %+v", r)
	}
	p := r.Processes[0]
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", client.pid))
	if err != nil {
		t.Fatal(err)
	}
	netns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", client.pid))
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != client.pid || p.Comm != strings.TrimSpace(string(comm)) || p.Netns != netns {
		t.Errorf("process %+v, want comm %q and netns %s (the kernel's own)", p, strings.TrimSpace(string(comm)), netns)
	}
	if p.Sysctl != (Sysctl{600, 30, 5}) {
		t.Errorf("sysctl %+v, want the client namespace's 600/30/5", p.Sysctl)
	}
	if r.Processes[1].Sysctl != (Sysctl{7200, 75, 9}) {
		t.Errorf("server sysctl %+v, want the kernel defaults", r.Processes[1].Sysctl)
	}
	if r.Processes[0].Netns == r.Processes[1].Netns {
		t.Errorf("both processes report netns %s", p.Netns)
	}
	fds := byFD(p)
	if len(p.Sockets) != len(h) {
		t.Errorf("%d sockets, want %d: %+v", len(p.Sockets), len(h), p.Sockets)
	}
	want := []struct {
		family, state string
		verdict       Verdict
		reason        string
		deadPeer      int
	}{
		{"inet", "ESTABLISHED", AtRisk, "keepalive off", 0},
		{"inet", "ESTABLISHED", AtRisk, "first probe after 600s, middlebox forgets after 350s", 600 + 30*5},
		{"inet6", "ESTABLISHED", OK, "", 30 + 5*3},
		{"inet6", "ESTABLISHED", OK, "", 20 + 2},
		{"inet", "LISTEN", Listen, "accepted sockets inherit keepalive on, first probe after 45s", 45 + 7},
		{"inet6", "LISTEN", Listen, "accepted sockets inherit keepalive off", 0},
		{"inet", "ESTABLISHED", Local, "peer on this host, no middlebox in between", 100 + 30*5},
		{"inet6", "ESTABLISHED", Local, "peer on this host, no middlebox in between", 0},
	}
	for i, hs := range h {
		sk, ok := fds[hs.FD]
		if !ok {
			t.Errorf("fd %d (%s) missing", hs.FD, hs.Spec)
			continue
		}
		checkExact(t, sk, hs)
		compareSS(t, sk, before, after)
		w := want[i]
		if sk.Family != w.family || sk.State != w.state || sk.Verdict != w.verdict || sk.Reason != w.reason || sk.DeadPeerS != w.deadPeer {
			t.Errorf("fd %d (%s): %s %s %s %q dead peer %d, want %+v", hs.FD, hs.Spec, sk.Family, sk.State, sk.Verdict, sk.Reason, sk.DeadPeerS, w)
		}
		if !strings.HasSuffix(sk.Local, fmt.Sprintf(":%d", hs.LocalPort)) {
			t.Errorf("fd %d: local %s, getsockname port %d", hs.FD, sk.Local, hs.LocalPort)
		}
		if sk.State == "ESTABLISHED" && sk.Keepalive.Enabled != sk.Keepalive.TimerArmed {
			t.Errorf("fd %d: enabled %v but timer armed %v", hs.FD, sk.Keepalive.Enabled, sk.Keepalive.TimerArmed)
		}
	}
	// The server holds a listener and one accepted socket per remote dial,
	// all with keepalive off (the listener set none).
	srv := r.Processes[1]
	var estab, listen int
	for _, sk := range srv.Sockets {
		switch {
		case sk.State == "LISTEN" && sk.Verdict == Listen && sk.Family == "inet6":
			listen++
		case sk.State == "ESTABLISHED" && sk.Verdict == AtRisk && sk.Reason == "keepalive off":
			estab++
		default:
			t.Errorf("server socket %+v", sk)
		}
	}
	if listen != 1 || estab != 4 {
		t.Errorf("server: %d listeners, %d established, want 1 and 4", listen, estab)
	}
	wantSum := Summary{Sockets: 6 + 4, OK: 2, AtRisk: 2 + 4, Local: 2, Listening: 3}
	if r.Summary != wantSum {
		t.Errorf("summary %+v, want %+v", r.Summary, wantSum)
	}
	if !r.Failed() || len(r.Notes) != 0 {
		t.Errorf("failed %v notes %q", r.Failed(), r.Notes)
	}

	// A longer middlebox timeout makes the 600 s socket fine, a shorter one
	// condemns the 30 s one.
	for _, tc := range []struct {
		idle   time.Duration
		ok, at int
	}{{time.Hour, 3, 1}, {25 * time.Second, 1, 3}} {
		r, err := ScanPIDs([]int{client.pid}, Options{MaxIdle: tc.idle})
		if err != nil {
			t.Fatal(err)
		}
		if r.Summary.OK != tc.ok || r.Summary.AtRisk != tc.at || r.MaxIdleS != int(tc.idle.Seconds()) {
			t.Errorf("max idle %v: summary %+v", tc.idle, r.Summary)
		}
	}

	// PID is the one-process form other commands use.
	pr, err := PID(client.pid, Options{})
	if err != nil || len(pr.Sockets) != len(h) {
		t.Errorf("PID: %v, %d sockets", err, len(pr.Sockets))
	}

	// Without the right to duplicate descriptors the values come from timers.
	r, err = ScanPIDs([]int{client.pid}, Options{NoExact: true})
	if err != nil {
		t.Fatal(err)
	}
	fds = byFD(r.Processes[0])
	wantInferred := []struct {
		source  Source
		enabled bool
		idle    int
	}{
		{Inferred, false, 0}, {Inferred, true, 600}, {Inferred, true, 30}, {Inferred, true, 20},
		{Unknown, false, 0}, {Unknown, false, 0}, {Inferred, true, 100}, {Inferred, false, 0},
	}
	for i, hs := range h {
		sk, w := fds[hs.FD], wantInferred[i]
		k := sk.Keepalive
		// Idle is estimated to the second; allow one second of clock skew.
		if k.Source != w.source || k.Enabled != w.enabled || k.IdleS < w.idle-1 || k.IdleS > w.idle+1 {
			t.Errorf("inferred fd %d (%s): %+v, want %+v", hs.FD, hs.Spec, k, w)
		}
		if k.Enabled && (k.IntervalS != 30 || k.Count != 5) {
			t.Errorf("inferred fd %d: interval/count %d/%d, want the namespace's 30/5", hs.FD, k.IntervalS, k.Count)
		}
	}
	// Inferred idles are lower bounds: below max idle they prove nothing
	// (issue 12 item 3), so the two keepalive-on sockets are unknown, not ok.
	if s := r.Summary; s.OK != 0 || s.AtRisk != 2 || s.Local != 2 || s.Unknown != 2 {
		t.Errorf("inferred summary %+v", s)
	}
	if len(r.Notes) != 0 {
		t.Errorf("NoExact is a choice, not a lack of privilege: notes %q", r.Notes)
	}
}

func TestUnansweredProbes(t *testing.T) {
	l := newLab(t, 62)
	testenv.Need(t, "nft")
	client := start(t, helper(l.client, "dial4,"+l.link.A4+":8080,ka=1,idle=1,intvl=1,cnt=50"))
	// Drop everything the server sends: keepalive probes go unanswered.
	nft := func(args ...string) {
		t.Helper()
		if out, err := l.client.Command("nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	nft("add", "table", "inet", "kadiagtest")
	nft("add", "chain", "inet", "kadiagtest", "in", "{ type filter hook input priority 0; }")
	nft("add", "rule", "inet", "kadiagtest", "in", "tcp", "sport", "8080", "drop")
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		before := ssDump(t, l.client)
		r, err := ScanPIDs([]int{client.pid}, Options{})
		after := ssDump(t, l.client)
		if err != nil {
			t.Fatal(err)
		}
		sk := r.Processes[0].Sockets[0]
		if sk.Keepalive.ProbesSent < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("no unanswered probes after 10s: %+v", sk)
			}
			continue
		}
		compareSS(t, sk, before, after)
		checkExact(t, sk, client.sockets[0])
		if sk.Timer != "keepalive" || !sk.Keepalive.TimerArmed || sk.Verdict != OK {
			t.Errorf("probing socket %+v", sk)
		}
		// Inferred: the idle time cannot be estimated while probing.
		r, err = ScanPIDs([]int{client.pid}, Options{NoExact: true})
		if err != nil {
			t.Fatal(err)
		}
		sk = r.Processes[0].Sockets[0]
		if sk.Keepalive.Source != Unknown || sk.Verdict != Undetermined || !strings.Contains(sk.Reason, "probes unanswered") {
			t.Errorf("inferred probing socket %+v", sk)
		}
		if r.Failed() {
			t.Error("unknown fails only with Strict")
		}
		r, _ = ScanPIDs([]int{client.pid}, Options{NoExact: true, Strict: true})
		if !r.Failed() {
			t.Error("unknown must fail with Strict")
		}
		return
	}
}

func TestScanNetns(t *testing.T) {
	l := newLab(t, 63)
	client := start(t, helper(l.client, "dial6,["+l.link.A6+"]:8080,ka=1,idle=40", "dial4,"+l.link.A4+":8080"))
	r, err := ScanNetns(l.client.Path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Processes) != 1 || r.Processes[0].PID != 0 || r.Processes[0].NetnsPath != l.client.Path {
		t.Fatalf("processes %+v", r.Processes)
	}
	p := r.Processes[0]
	if len(p.Sockets) != 2 || len(r.Notes) != 1 {
		t.Fatalf("sockets %+v notes %q", p.Sockets, r.Notes)
	}
	pr, err := PID(client.pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, sk := range p.Sockets {
		var match *Socket
		for j := range pr.Sockets {
			if pr.Sockets[j].Inode == sk.Inode {
				match = &pr.Sockets[j]
			}
		}
		if match == nil || sk.FD != -1 || sk.Keepalive.Source != Inferred || sk.Keepalive.Enabled != match.Keepalive.Enabled {
			t.Errorf("netns socket %d %+v, process view %+v", i, sk, match)
		}
	}
	if r.Summary.Unknown != 1 || r.Summary.AtRisk != 1 {
		t.Errorf("summary %+v (an inferred idle of 40 s is a lower bound: unknown, not ok)", r.Summary)
	}
}

func TestScanAllSharesOneDumpPerNetns(t *testing.T) {
	l := newLab(t, 64)
	a := start(t, helper(l.client, "dial4,"+l.link.A4+":8080,ka=1,idle=10"))
	b := start(t, helper(l.client, "dial6,["+l.link.A6+"]:8080"))
	// Processes of one namespace share one namespace entry, so one dump.
	s := newScan(Options{})
	for _, pid := range []int{a.pid, b.pid, l.serverProc.pid} {
		if err := s.addProcess(pid); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.nss) != 2 || s.procs[0].ns != s.procs[1].ns {
		t.Errorf("%d namespaces for two clients and a server, want 2, shared by the clients", len(s.nss))
	}
	for _, n := range s.nss {
		if n.h.IsOpen() {
			n.h.Close()
		}
	}
	r, err := ScanAll(Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]Process{}
	for _, p := range r.Processes {
		found[p.PID] = p
		if len(p.Sockets) == 0 {
			t.Errorf("pid %d listed without TCP sockets", p.PID)
		}
	}
	for _, s := range []*started{a, b, l.serverProc} {
		p, ok := found[s.pid]
		if !ok {
			t.Errorf("pid %d missing from --all", s.pid)
			continue
		}
		for _, sk := range p.Sockets {
			if !sk.Keepalive.Source.IsExact() {
				t.Errorf("pid %d fd %d: source %s as root", s.pid, sk.FD, sk.Keepalive.Source)
			}
		}
	}
	if pa, pb := found[a.pid], found[b.pid]; pa.Netns != pb.Netns || len(pa.Sockets) != 1 || len(pb.Sockets) != 1 ||
		pa.Sockets[0].Verdict != OK || pb.Sockets[0].Verdict != AtRisk {
		t.Errorf("clients %+v %+v", pa, pb)
	}
	if len(found[l.serverProc.pid].Sockets) != 3 {
		t.Errorf("server sockets %+v", found[l.serverProc.pid].Sockets)
	}
}

func TestErrors(t *testing.T) {
	testenv.Privileged(t)
	if _, err := ScanPIDs([]int{1 << 22}, Options{}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("pid beyond pid_max: %v", err)
	}
	if _, err := ScanPIDs([]int{0}, Options{}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("pid 0: %v", err)
	}
	if _, err := ScanNetns("/nonexistent/netns", Options{}); !errors.Is(err, ErrNetns) {
		t.Errorf("missing netns file: %v", err)
	}
	if _, err := ScanNetns("/proc/self/ns/uts", Options{}); !errors.Is(err, ErrNetns) || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("uts namespace file: %v", err)
	}
	// A process with no TCP sockets is an empty, passing result.
	r, err := ScanPIDs([]int{os.Getpid()}, Options{})
	if err != nil || len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 0 || r.Failed() {
		t.Errorf("own pid: %v %+v", err, r)
	}
}

// TestProcessExitsMidScan kills a process after it was found and before its
// descriptors are read: it is skipped with a note, the others still scanned.
func TestProcessExitsMidScan(t *testing.T) {
	l := newLab(t, 65)
	stay := start(t, helper(l.client, "dial4,"+l.link.A4+":8080"))
	gone := start(t, helper(l.client, "dial4,"+l.link.A4+":8080"))
	s := newScan(Options{})
	for _, pid := range []int{stay.pid, gone.pid} {
		if err := s.addProcess(pid); err != nil {
			t.Fatal(err)
		}
	}
	gone.cmd.Process.Kill()
	gone.cmd.Wait()
	if err := s.run(true); err != nil {
		t.Fatal(err)
	}
	r := s.report()
	if len(r.Processes) != 1 || r.Processes[0].PID != stay.pid || len(r.Processes[0].Sockets) != 1 {
		t.Errorf("processes %+v", r.Processes)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], fmt.Sprintf("pid %d exited during the scan", gone.pid)) {
		t.Errorf("notes %q", r.Notes)
	}
}

// TestListenerInheritance checks what the listener row promises: accepted
// sockets carry the listener's keepalive options.
func TestListenerInheritance(t *testing.T) {
	l := newLab(t, 66)
	srv := start(t, helper(l.server, "serve,[::]:8081,ka=1,idle=50,intvl=6,cnt=3,ut=4000"))
	start(t, helper(l.client, "dial4,"+l.link.A4+":8081"))
	var p Process
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if p, err = PID(srv.pid, Options{}); err != nil {
			t.Fatal(err)
		}
		if len(p.Sockets) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(p.Sockets) != 2 {
		t.Fatalf("server sockets %+v", p.Sockets)
	}
	lis, acc := p.Sockets[0], p.Sockets[1]
	if lis.State != "LISTEN" || acc.State != "ESTABLISHED" {
		t.Fatalf("sockets %+v", p.Sockets)
	}
	want := Keepalive{Enabled: true, IdleS: 50, IntervalS: 6, Count: 3, UserTimeoutMs: 4000, Source: lis.Keepalive.Source}
	if !want.Source.IsExact() {
		t.Errorf("listener source %q as root", want.Source)
	}
	got := acc.Keepalive
	got.TimerArmed, got.NextProbeMs = false, 0
	if lis.Keepalive != want || got != want || !acc.Keepalive.TimerArmed {
		t.Errorf("listener %+v, accepted %+v, want %+v", lis.Keepalive, acc.Keepalive, want)
	}
	if lis.Reason != "accepted sockets inherit keepalive on, first probe after 50s" || acc.Verdict != OK {
		t.Errorf("listener reason %q, accepted verdict %s", lis.Reason, acc.Verdict)
	}
}

// TestProcessExitsBetweenListingAndDuplication ends a process (left a
// zombie) after its descriptors were listed and before they are duplicated:
// it is skipped with a note, not shown without sockets.
func TestProcessExitsBetweenListingAndDuplication(t *testing.T) {
	l := newLab(t, 68)
	stay := start(t, helper(l.client, "dial4,"+l.link.A4+":8080"))
	gone := start(t, helper(l.client, "dial4,"+l.link.A4+":8080"))
	testHookAfterListing = func() {
		gone.cmd.Process.Kill()
		// Wait until it is a zombie: its descriptors are closed then.
		for i := 0; i < 200; i++ {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", gone.pid))
			if strings.Contains(string(b), ") Z ") {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Error("killed helper never became a zombie")
	}
	defer func() { testHookAfterListing = nil }()
	r, err := ScanPIDs([]int{stay.pid, gone.pid}, Options{noBPF: true}) // BPF duplicates nothing: no "between"
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Processes) != 1 || r.Processes[0].PID != stay.pid || len(r.Processes[0].Sockets) != 1 {
		t.Errorf("processes %+v", r.Processes)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], fmt.Sprintf("pid %d exited during the scan", gone.pid)) {
		t.Errorf("notes %q", r.Notes)
	}
}

// TestEachHandsOverWhatTheReportHolds: with Options.Each a scan hands over,
// in order, the processes and sockets the Report would list (verdicts
// included), lists none itself, and counts the same summary.
func TestEachHandsOverWhatTheReportHolds(t *testing.T) {
	l := newLab(t, 75)
	a := start(t, helper(l.client, "dial4,"+l.link.A4+":8080,ka=1,idle=10"))
	b := start(t, helper(l.client, "dial6,["+l.link.A6+"]:8080"))
	pids := []int{a.pid, b.pid, l.serverProc.pid}
	want, err := ScanPIDs(pids, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Process
	r, err := ScanPIDs(pids, Options{Each: func(p Process) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Processes) != 0 || r.Summary != want.Summary || r.Summary.Sockets == 0 {
		t.Errorf("report with Each: %d processes, summary %+v; without: %+v", len(r.Processes), r.Summary, want.Summary)
	}
	if len(got) != len(want.Processes) {
		t.Fatalf("Each got %d processes, the report lists %d", len(got), len(want.Processes))
	}
	for i, p := range got {
		w := want.Processes[i]
		if p.PID != w.PID || len(p.Sockets) != len(w.Sockets) {
			t.Errorf("process %d: pid %d with %d sockets, report: pid %d with %d", i, p.PID, len(p.Sockets), w.PID, len(w.Sockets))
			continue
		}
		for j, sk := range p.Sockets {
			ws := w.Sockets[j]
			// The clocks move between the two scans.
			sk.LastDataRecvMs, sk.LastAckRecvMs, sk.TimerExpiresMs, sk.Keepalive.NextProbeMs = ws.LastDataRecvMs, ws.LastAckRecvMs, ws.TimerExpiresMs, ws.Keepalive.NextProbeMs
			if !reflect.DeepEqual(sk, ws) {
				t.Errorf("pid %d socket %d:\n each   %+v\n report %+v", p.PID, j, sk, ws)
			}
		}
	}
}
