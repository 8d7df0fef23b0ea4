package inspect

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// ssSocket is one socket as `ss -tonie` prints it: the oracle nobody here wrote.
type ssSocket struct {
	state         string
	local, remote string
	timer         string
	expiresMs     int64
	precisionMs   int64 // ss drops the milliseconds from 10 s on, the seconds from 10 min on
	retrans       int
	inode         uint64
}

var (
	ssTimer  = regexp.MustCompile(`timer:\((\w+),([^,]*),(\d+)\)`)
	ssInode  = regexp.MustCompile(`\bino:(\d+)`)
	ssExpiry = regexp.MustCompile(`^(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?$`)
)

// ssDump runs ss -tonie -a (listeners too) inside n and returns its sockets by inode.
func ssDump(t *testing.T, n *testenv.Netns) map[uint64]ssSocket {
	t.Helper()
	testenv.Need(t, "ss", "nsenter")
	out, err := n.Command("ss", "-tonie", "-a").Output()
	if err != nil {
		t.Fatalf("ss -tonie: %v", err)
	}
	return parseSS(t, string(out))
}

// parseSS reads the output of ss -tonie (live or recorded in testdata).
func parseSS(t *testing.T, out string) map[uint64]ssSocket {
	t.Helper()
	res := map[uint64]ssSocket{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || strings.HasPrefix(line, "State") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		s := ssSocket{state: ssState(f[0]), local: ssAddr(f[3]), remote: ssAddr(f[4])}
		if m := ssInode.FindStringSubmatch(line); m != nil {
			s.inode, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if m := ssTimer.FindStringSubmatch(line); m != nil {
			s.timer = m[1]
			s.expiresMs, s.precisionMs = ssMs(t, m[2])
			s.retrans, _ = strconv.Atoi(m[3])
		}
		if s.inode != 0 {
			res[s.inode] = s
		}
	}
	return res
}

func ssState(s string) string {
	switch s {
	case "ESTAB":
		return "ESTABLISHED"
	case "UNCONN":
		return "CLOSE"
	}
	return strings.ReplaceAll(s, "-", "_")
}

// ssAddr normalises ss's address: IPv4-mapped IPv6 shown as IPv4, the
// wildcard "*" as the unspecified address of either family.
func ssAddr(s string) string {
	if strings.HasPrefix(s, "*:") {
		return s
	}
	// A listener's peer port prints as "*".
	if a, ok := strings.CutSuffix(s, ":*"); ok {
		s = a + ":0"
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		// ss appends %iface to scoped addresses; none of ours are.
		return s
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// ssMs parses ss's print_ms_timer format: "59sec", "1min2sec", "1.500ms",
// "500ms", "12min".
func ssMs(t *testing.T, s string) (ms, precision int64) {
	m := ssExpiry.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("ss timer expiry %q: unknown format", s)
	}
	min, _ := strconv.ParseInt(m[1], 10, 64)
	sec, _ := strconv.ParseInt(m[2], 10, 64)
	msec, _ := strconv.ParseInt(m[3], 10, 64)
	precision = 1
	switch {
	case min > 9:
		precision = 60000
	case min > 0 || sec > 9:
		precision = 1000
	}
	return min*60000 + sec*1000 + msec, precision
}

// compareSS checks a scanned socket against ss output taken just before and
// just after the scan: state, inode, addresses, timer kind, expiry, probes.
func compareSS(t *testing.T, sk Socket, before, after map[uint64]ssSocket) {
	t.Helper()
	b, ok1 := before[sk.Inode]
	a, ok2 := after[sk.Inode]
	if !ok1 || !ok2 {
		t.Errorf("inode %d (%s %s) not in ss output", sk.Inode, sk.Local, sk.Remote)
		return
	}
	if sk.State != b.state || sk.State != a.state {
		t.Errorf("inode %d: state %s, ss %s/%s", sk.Inode, sk.State, b.state, a.state)
	}
	if !strings.HasPrefix(b.local, "*:") && sk.Local != b.local {
		t.Errorf("inode %d: local %s, ss %s", sk.Inode, sk.Local, b.local)
	}
	if !strings.HasPrefix(b.remote, "*:") && sk.Remote != b.remote {
		t.Errorf("inode %d: remote %s, ss %s", sk.Inode, sk.Remote, b.remote)
	}
	if sk.Timer != b.timer || sk.Timer != a.timer {
		t.Errorf("inode %d: timer %q, ss %q/%q", sk.Inode, sk.Timer, b.timer, a.timer)
		return
	}
	if sk.Timer == "" {
		if sk.Keepalive.TimerArmed {
			t.Errorf("inode %d: keepalive timer armed without a timer", sk.Inode)
		}
		return
	}
	// Expiry counts down between the three readings, unless the timer fired
	// and was re-armed in between (then the probe count moved).
	if b.retrans == a.retrans && sk.TimerExpiresMs > b.expiresMs+b.precisionMs || sk.TimerExpiresMs < a.expiresMs-a.precisionMs {
		t.Errorf("inode %d: expiry %d ms, ss %d ms before and %d ms after", sk.Inode, sk.TimerExpiresMs, b.expiresMs, a.expiresMs)
	}
	if sk.TimerRetrans < b.retrans || sk.TimerRetrans > a.retrans {
		t.Errorf("inode %d: retrans %d, ss %d before and %d after", sk.Inode, sk.TimerRetrans, b.retrans, a.retrans)
	}
	if sk.Timer == "keepalive" {
		k := sk.Keepalive
		if !k.TimerArmed || k.NextProbeMs != sk.TimerExpiresMs || k.ProbesSent != sk.TimerRetrans {
			t.Errorf("inode %d: keepalive %+v does not match the timer", sk.Inode, k)
		}
	}
}
