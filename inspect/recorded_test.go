package inspect

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The fixtures in testdata/diag are real inet_diag answers of this
// project's kind of kernel (6.18), recorded once from a lab with
// `go test ./inspect -run TestRecordDiagFixtures -record-diag` (root), with
// ss -tonie's view taken just before and after and the sockets' options as
// getsockopt read them inside the process that holds them. The tests below
// decode and judge them without any privilege.
var recordDiag = flag.Bool("record-diag", false, "record testdata/diag from a live lab (root)")

const fixtureDir = "testdata/diag"

// fixture is what testdata/diag/lab.json holds.
type fixture struct {
	Sysctl  Sysctl         `json:"sysctl"`
	Sockets []helperSocket `json:"sockets"` // as getsockopt read them in the process
	// ReArmed is the index of the socket whose keepalive timer was re-armed
	// under traffic when the dump was taken.
	ReArmed int `json:"re_armed"`
}

// labSpecs are the recorded lab's client sockets; the server netns serves
// 8080 (silent) and 8081 (one byte every 200 ms).
func labSpecs(a4, a6 string) []string {
	return []string{
		"dial4," + a4 + ":8080",                                    // 0 keepalive off
		"dial4," + a4 + ":8080,ka=1",                               // 1 on, namespace defaults (600 s)
		"dial6,[" + a6 + "]:8080,ka=1,idle=40,intvl=5,cnt=3",       // 2 custom
		"dial4," + a4 + ":8081,ka=1,idle=5",                        // 3 re-armed under traffic
		"listen4,0.0.0.0:9090,ka=1,idle=45,intvl=7,cnt=2",          // 4 listener
		"dial4," + a4 + ":8080,ka=1,idle=20,intvl=2,cnt=4,ut=5000", // 5 with TCP_USER_TIMEOUT
	}
}

func TestRecordDiagFixtures(t *testing.T) {
	if !*recordDiag {
		t.Skip("records fixtures only with -record-diag")
	}
	l := newLab(t, 74)
	sysctl(t, l.client, "tcp_keepalive_time", 600)
	sysctl(t, l.client, "tcp_keepalive_intvl", 30)
	sysctl(t, l.client, "tcp_keepalive_probes", 5)
	start(t, helper(l.server, "chatter,[::]:8081"))
	client := start(t, helper(l.client, labSpecs(l.link.A4, l.link.A6)...))
	time.Sleep(6 * time.Second) // the 5 s timer fires and re-arms under traffic
	var msgs [][]byte
	var before, after []byte
	for try := 0; ; try++ {
		var err error
		msgs = nil
		before, _ = l.client.Command("ss", "-tonie", "-a").Output()
		err = l.client.Do(func() error {
			fd, err := diagSocket(l.client.Handle, true)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			buf := make([]byte, diagBufferSize)
			for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
				if _, err := dumpFamily(fd, buf, diagRequest{family: fam, protocol: unix.IPPROTO_TCP}, func(b []byte) {
					msgs = append(msgs, append([]byte(nil), b...))
				}); err != nil {
					return err
				}
			}
			return nil
		})
		after, _ = l.client.Command("ss", "-tonie", "-a").Output()
		if err != nil {
			t.Fatal(err)
		}
		// Keep a moment where the lower bound is well below the real 5 s.
		if e := findPort(t, msgs, client.sockets[3].LocalPort); e != nil {
			sk := newSocket(3, e)
			sk.setInferred(e, Sysctl{})
			if sk.Keepalive.IdleS < 3 {
				break
			}
		}
		if try == 50 {
			t.Fatal("the re-armed socket never read below 3 s")
		}
		time.Sleep(170 * time.Millisecond)
	}
	os.MkdirAll(fixtureDir, 0o755)
	var hexes strings.Builder
	for _, m := range msgs {
		hexes.WriteString(hex.EncodeToString(m) + "\n")
	}
	f := fixture{Sysctl: Sysctl{600, 30, 5}, Sockets: client.sockets, ReArmed: 3}
	js, _ := json.MarshalIndent(f, "", "  ")
	for name, b := range map[string][]byte{"lab.nl.hex": []byte(hexes.String()), "lab.ss-before": before, "lab.ss-after": after, "lab.json": js} {
		if err := os.WriteFile(filepath.Join(fixtureDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// findPort decodes msgs and returns the entry with local port port (a
// connection, not the listener of the same port), or nil.
func findPort(t *testing.T, msgs [][]byte, port int) *diagEntry {
	for _, m := range msgs {
		if e, ok := decodeDiag(m); ok && int(e.sport) == port {
			return &e
		}
	}
	return nil
}

// loadFixture reads testdata/diag.
func loadFixture(t *testing.T) (fixture, [][]byte, map[uint64]ssSocket, map[uint64]ssSocket) {
	t.Helper()
	var probe [2]byte
	binary.NativeEndian.PutUint16(probe[:], 1)
	if probe[0] != 1 {
		t.Skip("the fixtures are a little-endian kernel's messages")
	}
	var f fixture
	b, err := os.ReadFile(filepath.Join(fixtureDir, "lab.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	h, err := os.Open(filepath.Join(fixtureDir, "lab.nl.hex"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var msgs [][]byte
	sc := bufio.NewScanner(h)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m, err := hex.DecodeString(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	ss := func(name string) map[uint64]ssSocket {
		b, err := os.ReadFile(filepath.Join(fixtureDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return parseSS(t, string(b))
	}
	return f, msgs, ss("lab.ss-before"), ss("lab.ss-after")
}

// TestDecodeRecordedDiag decodes the recorded messages and compares every
// socket with ss -tonie's view of the same moment: state, addresses, inode,
// timer, expiry, probes.
func TestDecodeRecordedDiag(t *testing.T) {
	f, msgs, before, after := loadFixture(t)
	if len(msgs) < len(f.Sockets) {
		t.Fatalf("%d messages for %d sockets", len(msgs), len(f.Sockets))
	}
	seen := 0
	for _, m := range msgs {
		e, ok := decodeDiag(m)
		if !ok || !e.hasInfo {
			t.Fatalf("message %x: not decoded with tcp_info", m)
		}
		sk := newSocket(-1, &e)
		sk.setInferred(&e, f.Sysctl)
		compareSS(t, sk, before, after)
		seen++
	}
	if seen != len(before) {
		t.Errorf("decoded %d sockets, ss shows %d", seen, len(before))
	}
	// Truncated or malformed input is refused, never read out of bounds.
	for n := 0; n < len(msgs[0]); n++ {
		if e, ok := decodeDiag(msgs[0][:n]); ok && n < sizeofDiagMsg {
			t.Errorf("decodeDiag of %d bytes: %+v", n, e)
		}
	}
}

// TestJudgeRecorded judges the recorded sockets twice: from the options
// getsockopt read in the process (exact) and from the timers alone
// (inferred), against the lab's own configuration.
func TestJudgeRecorded(t *testing.T) {
	f, msgs, _, _ := loadFixture(t)
	entry := func(h helperSocket) *diagEntry {
		for _, m := range msgs {
			e, _ := decodeDiag(m)
			listen := e.state == stateListen
			if int(e.sport) == h.LocalPort && listen == strings.HasPrefix(h.Spec, "listen") {
				return &e
			}
		}
		t.Fatalf("%s: no recorded message", h.Spec)
		return nil
	}
	const maxIdle = 350 * time.Second
	want := []struct {
		exact, inferred Verdict
		deadPeer        int
	}{
		0: {AtRisk, AtRisk, 0},
		1: {AtRisk, AtRisk, 600 + 30*5}, // the namespace's 600 s, also as a lower bound
		2: {OK, Undetermined, 40 + 5*3},
		3: {OK, Undetermined, 5 + 75*9}, // the host defaults the helper read
		4: {Listen, Listen, 45 + 7*2},
		5: {OK, Undetermined, 20 + 1*2}, // the user timeout (5 s) ends it at the first probe
	}
	for i, h := range f.Sockets {
		e := entry(h)
		o := options{keepalive: h.Keepalive != 0, idle: h.Idle, intvl: h.Intvl, cnt: h.Cnt, userTimeout: h.UserTimeout}
		ex := newSocket(h.FD, e)
		ex.setExact(o, e)
		v, reason := Judge(&ex, maxIdle)
		dp := ex.Keepalive.deadPeer()
		if i == 3 {
			want[i].deadPeer = h.Idle + h.Intvl*h.Cnt
		}
		if v != want[i].exact || dp != want[i].deadPeer {
			t.Errorf("%s exact: %s %q, dead peer %d s; want %s, %d s", h.Spec, v, reason, dp, want[i].exact, want[i].deadPeer)
		}
		in := newSocket(h.FD, e)
		in.setInferred(e, f.Sysctl)
		v, reason = Judge(&in, maxIdle)
		if v != want[i].inferred {
			t.Errorf("%s inferred (%+v): %s %q, want %s", h.Spec, in.Keepalive, v, reason, want[i].inferred)
		}
		if k := in.Keepalive; k.Enabled && (!k.IdleLowerBound || k.IdleS > h.Idle) {
			t.Errorf("%s inferred idle %d s: not a lower bound of the real %d s", h.Spec, k.IdleS, h.Idle)
		}
	}
	// The re-armed socket: its real idle (5 s) is above a 3 s middlebox,
	// the recorded lower bound below it. Exact says at-risk, inferred must
	// not say ok.
	h := f.Sockets[f.ReArmed]
	e := entry(h)
	in := newSocket(h.FD, e)
	in.setInferred(e, f.Sysctl)
	if in.Keepalive.IdleS >= 3 {
		t.Fatalf("fixture: re-armed socket reads %d s, not below 3 s", in.Keepalive.IdleS)
	}
	if v, reason := Judge(&in, 3*time.Second); v != Undetermined || !strings.Contains(reason, "lower bound") {
		t.Errorf("re-armed socket inferred against 3 s: %s %q, want unknown naming the lower bound", v, reason)
	}
}

// TestJudgeTable covers the verdict rules on their own.
func TestJudgeTable(t *testing.T) {
	est := func(k Keepalive) *Socket {
		return &Socket{State: "ESTABLISHED", Local: "198.18.0.2:40000", Remote: "198.18.0.1:443", Keepalive: k}
	}
	cases := []struct {
		name    string
		s       *Socket
		maxIdle time.Duration
		want    Verdict
	}{
		{"exact off", est(Keepalive{Source: Exact}), 350 * time.Second, AtRisk},
		{"exact below", est(Keepalive{Source: Exact, Enabled: true, IdleS: 349}), 350 * time.Second, OK},
		{"exact equal", est(Keepalive{Source: Exact, Enabled: true, IdleS: 350}), 350 * time.Second, AtRisk},
		{"inferred off", est(Keepalive{Source: Inferred}), 350 * time.Second, AtRisk},
		{"inferred bound below", est(Keepalive{Source: Inferred, Enabled: true, IdleS: 60, IdleLowerBound: true}), 350 * time.Second, Undetermined},
		{"inferred bound above", est(Keepalive{Source: Inferred, Enabled: true, IdleS: 400, IdleLowerBound: true}), 350 * time.Second, AtRisk},
		{"inferred beyond MAX_TCP_KEEPIDLE", est(Keepalive{Source: Inferred, Enabled: true, IdleS: 60, IdleLowerBound: true}), 40000 * time.Second, OK},
		{"unknown", est(Keepalive{Source: Unknown}), 350 * time.Second, Undetermined},
		{"loopback", &Socket{State: "ESTABLISHED", Local: "127.0.0.1:1", Remote: "127.0.0.1:2"}, 350 * time.Second, Local},
		{"listener", &Socket{State: "LISTEN", Keepalive: Keepalive{Source: Exact}}, 350 * time.Second, Listen},
	}
	for _, c := range cases {
		if v, reason := Judge(c.s, c.maxIdle); v != c.want {
			t.Errorf("%s: %s %q, want %s", c.name, v, reason, c.want)
		}
	}
}

// TestDeadPeerTable: idle + interval × count, or the first probe at or
// after TCP_USER_TIMEOUT (tcp_keepalive_timer's icsk_user_timeout rule).
func TestDeadPeerTable(t *testing.T) {
	for _, c := range []struct {
		k    Keepalive
		want int
	}{
		{Keepalive{}, 0},
		{Keepalive{Enabled: true, IdleS: 7200, IntervalS: 75, Count: 9}, 7875},
		{Keepalive{Enabled: true, IdleS: 60, IntervalS: 10, Count: 5, UserTimeoutMs: 30000}, 70},
		{Keepalive{Enabled: true, IdleS: 60, IntervalS: 10, Count: 5, UserTimeoutMs: 85000}, 60 + 3*10},
		{Keepalive{Enabled: true, IdleS: 60, IntervalS: 10, Count: 5, UserTimeoutMs: 1}, 70},
	} {
		if got := c.k.deadPeer(); got != c.want {
			t.Errorf("%+v: %d s, want %d s", c.k, got, c.want)
		}
	}
}
