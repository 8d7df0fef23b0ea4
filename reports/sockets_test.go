package reports

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/inspect"
)

func socketsFixture() *inspect.Report {
	return &inspect.Report{
		Schema: inspect.Schema, MaxIdleS: 350,
		Processes: []inspect.Process{
			{PID: 42, Comm: `java "x"`, Netns: "net:[4026531840]", Sysctl: inspect.Sysctl{KeepaliveTime: 7200, KeepaliveIntvl: 75, KeepaliveProbes: 9},
				Sockets: []inspect.Socket{
					{FD: 5, Inode: 123456, Family: "inet6", State: "ESTABLISHED", Local: "198.18.0.2:43210", Remote: "[2001:db8::1]:443",
						Keepalive: inspect.Keepalive{Enabled: true, IdleS: 60, IntervalS: 60, Count: 9, TimerArmed: true, NextProbeMs: 59000, Source: inspect.Exact},
						Verdict:   inspect.OK, DeadPeerS: 600, Timer: "keepalive", TimerExpiresMs: 59000},
					{FD: 6, Inode: 123457, Family: "inet", State: "ESTABLISHED", Local: "198.18.0.2:43211", Remote: "198.18.0.1:80",
						Keepalive: inspect.Keepalive{IdleS: 7200, IntervalS: 75, Count: 9, Source: inspect.Exact},
						Verdict:   inspect.AtRisk, Reason: "keepalive off"},
				}},
			{PID: 43, Comm: "idle", Netns: "net:[4026531840]", Sockets: []inspect.Socket{}},
		},
		Summary: inspect.Summary{Sockets: 2, OK: 1, AtRisk: 1},
		Notes:   []string{"pid 44 exited during the scan; skipped"},
	}
}

// The hand-streamed JSON must decode to exactly what encoding/json makes of
// the report, so the contract lives in inspect's struct tags alone.
func TestSocketsJSONMatchesEncodingJSON(t *testing.T) {
	for _, r := range []*inspect.Report{socketsFixture(), {Schema: inspect.Schema, Processes: []inspect.Process{}}} {
		var buf bytes.Buffer
		if err := Render(&buf, JSON, Sockets{r}); err != nil {
			t.Fatal(err)
		}
		var got, want any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, buf.String())
		}
		ref, _ := json.Marshal(r)
		json.Unmarshal(ref, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("streamed JSON differs:\n%s\nwant\n%s", buf.String(), ref)
		}
	}
}

func TestSocketsTableAndJUnit(t *testing.T) {
	var buf bytes.Buffer
	s := Sockets{socketsFixture()}
	if err := Render(&buf, Table, s); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"42   java \"x\"  5   ESTABLISHED  198.18.0.2:43210",
		"keepalive,59s,0",
		"keepalive off",
		"net:[4026531840]: sysctl defaults: keepalive time 2h, interval 75s, probes 9",
		"2 sockets: 1 ok, 1 at-risk, 0 local, 0 unknown; 0 listening (max idle 350s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	j := s.JUnit()
	if j.Tests != 2 || j.Failures != 1 || len(j.Suites) != 2 || j.Suites[0].Cases[1].Failure.Message != "keepalive off" {
		t.Errorf("junit %+v", j)
	}
}
