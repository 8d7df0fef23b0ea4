package reports

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/simulate"
)

func simulateFixture() *simulate.Result {
	exp := 10.0
	return &simulate.Result{
		Schema: simulate.Schema, IdleS: 350, After: "reset", Scale: 35, Preset: "aws-nat", LabIdleS: 10,
		ResponseDelayS: 12, KeepIdleS: 2, KeepIntvlS: 1, KeepCnt: 4, SlowKeepIdleS: 11, Family: "ipv4",
		Scenarios: []simulate.ScenarioResult{
			{Name: "none", Outcome: "timeout", Expected: "fail", Passed: true, ElapsedS: 17, ExpiredS: &exp,
				Conntrack: []simulate.ConntrackEvent{{T: 0.01, Event: "new", State: "SYN_SENT"}}, Evidence: "without keepalive: no response"},
			{Name: "app", Outcome: "timeout", Expected: "ok", Passed: false, ElapsedS: 17, Evidence: "keepalive set by the application: no response",
				Conntrack: []simulate.ConntrackEvent{}},
		},
		Summary: simulate.Summary{Scenarios: 2, Passed: 1},
	}
}

func TestSimulateRender(t *testing.T) {
	r := Simulate{simulateFixture()}
	var table bytes.Buffer
	if err := Render(&table, Table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"aws-nat, idle 350s, scaled ÷35 to 10s", "none", "UNEXPECTED", "10.0s", "1/2 scenarios as expected", "none: without keepalive"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := Render(&js, JSON, r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	// The embedded result's fields are the document's top level.
	for _, k := range []string{"schema", "idle_s", "after", "scale", "scenarios", "summary"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, js.String())
		}
	}
	s := r.JUnit()
	if s.Tests != 2 || s.Failures != 1 || !strings.Contains(s.Suites[0].Cases[0].SystemOut, "conntrack") {
		t.Errorf("junit %+v", s)
	}
}

func chainFixture() *simulate.Result {
	f4, f2 := 4.0, 2.0
	two := 2
	hops := []simulate.HopConfig{
		{Name: "aws-ec2-conntrack", IdleS: 140, LabIdleS: 4, After: "drop"},
		{Name: "aws-nat", IdleS: 70, LabIdleS: 2, After: "reset", NAT: true},
	}
	return &simulate.Result{
		Schema: simulate.Schema, IdleS: 70, After: "reset", Scale: 35, Chain: "eks-nat", LabIdleS: 2, Hops: hops,
		ResponseDelayS: 5, KeepIdleS: 1, KeepIntvlS: 1, KeepCnt: 4, SlowKeepIdleS: 3, Family: "ipv4",
		Scenarios: []simulate.ScenarioResult{
			{Name: "none", Outcome: "timeout", Expected: "fail", Passed: true, ElapsedS: 8, ExpiredS: &f2, ForgottenBy: &two,
				Conntrack: []simulate.ConntrackEvent{},
				Hops: []simulate.HopResult{
					{Name: "aws-ec2-conntrack", IdleS: 140, LabIdleS: 4, After: "drop", ForgotAtS: &f4,
						Conntrack: []simulate.ConntrackEvent{{T: 0.01, Event: "new", State: "SYN_SENT"}}},
					{Name: "aws-nat", IdleS: 70, LabIdleS: 2, After: "reset", NAT: true, ForgotAtS: &f2,
						Conntrack: []simulate.ConntrackEvent{{T: 0.01, Event: "new", State: "SYN_SENT"}}},
				},
				Notes: []string{"hop 1 (aws-ec2-conntrack): conntrack events lost from 1.000s: ENOBUFS"}},
			{Name: "app", Outcome: "ok", Expected: "ok", Passed: true, ElapsedS: 5, Probes: 4, Conntrack: []simulate.ConntrackEvent{},
				Hops: []simulate.HopResult{{Name: "aws-ec2-conntrack", LabIdleS: 4, After: "drop"}, {Name: "aws-nat", LabIdleS: 2, After: "reset", NAT: true}}},
		},
		Summary: simulate.Summary{Scenarios: 2, Passed: 2},
	}
}

// TestSimulateChainRender: a chain's table names the hops in order and
// which forgot first, every scenario's sentence is made here (the lab
// returns none), notes are shown; the HTML/Markdown document has one
// timeline per scenario and hop; the JSON carries the sentences too.
func TestSimulateChainRender(t *testing.T) {
	r := Simulate{chainFixture()}
	var table bytes.Buffer
	if err := Render(&table, Table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"middleboxes: client → eks-nat: 1 aws-ec2-conntrack idle 140s ÷35 = 4s (drop, no NAT) → 2 aws-nat idle 70s ÷35 = 2s (reset, NAT) → server",
		"none: without keepalive: no response after 8.0s, 0 probes — hop 2 (aws-nat) forgot the flow at 2.0s (1m10s unscaled)",
		"hop 1 aws-ec2-conntrack (idle 4s, drop) forgot at 4.0s; hop 2 aws-nat (idle 2s, reset) forgot at 2.0s — first to forget: hop 2",
		"app: keepalive set by the application (idle 1s): 200 OK after 5.0s, 4 probes — the probes kept the flow alive",
		"no hop forgot the flow", "note: hop 1 (aws-ec2-conntrack): conntrack events lost",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	d := r.Document()
	var tls []string
	for _, s := range d.Sections {
		for _, tl := range s.Timelines {
			tls = append(tls, tl.Title)
		}
	}
	if strings.Join(tls, "|") != "none — hop 1 aws-ec2-conntrack|none — hop 2 aws-nat|app — hop 1 aws-ec2-conntrack|app — hop 2 aws-nat" {
		t.Errorf("timelines %q: want one per scenario and hop", tls)
	}
	var js bytes.Buffer
	if err := Render(&js, JSON, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []struct {
			Evidence    string `json:"evidence"`
			ForgottenBy *int   `json:"forgotten_by"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil || len(doc.Scenarios) != 2 ||
		!strings.HasPrefix(doc.Scenarios[0].Evidence, "without keepalive") || doc.Scenarios[0].ForgottenBy == nil || doc.Scenarios[1].ForgottenBy != nil {
		t.Errorf("JSON (%v):\n%s", err, js.String())
	}
	if r.Scenarios[0].Evidence != "" {
		t.Error("rendering changed the result it renders")
	}
}
