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
