package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/path"
)

// pathFixture reads a measurement recorded on kadiag's test lab.
func pathFixture(t *testing.T, name string) *path.Result {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var r path.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestPathRender(t *testing.T) {
	r := Path{pathFixture(t, "path-heal.json")}
	var table bytes.Buffer
	if err := Render(&table, Table, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DIRECTION  IDLE TIMEOUT", "to-client  11.8s", "heal", "asymmetry: the middlebox re-creates", "measured in 13.1s with 345 connections"} {
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
	// The contract's fields, at the top level and per direction.
	for _, k := range []string{"schema", "target", "counterpart", "directions", "keepalive", "server_idle_close_s", "elapsed_s", "connections"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	tc := m["directions"].(map[string]any)["to_client"].(map[string]any)
	for _, k := range []string{"idle_timeout_s", "bracket_s", "after_expiry"} {
		if _, ok := tc[k]; !ok {
			t.Errorf("to_client lacks %q", k)
		}
	}
	if s := r.JUnit(); s.Tests != 2 || s.Failures != 0 {
		t.Errorf("junit without --expect-at-least: %+v", s)
	}
	exp := 30.0
	r.ExpectAtLeastS = &exp
	if s := r.JUnit(); s.Failures != 1 || r.Passed() {
		t.Errorf("junit with --expect-at-least 30s on a 12 s path: %+v", s)
	}
	var html, md bytes.Buffer
	if err := Render(&html, HTML, r); err != nil {
		t.Fatal(err)
	}
	if err := Render(&md, Markdown, r); err != nil {
		t.Fatal(err)
	}
	if strings.Count(html.String(), "<svg") < 2 || !strings.Contains(html.String(), "Survival against idle time") {
		t.Errorf("HTML has no survival chart per direction")
	}
	if !strings.Contains(md.String(), "expect at least 30s: FAILED") {
		t.Errorf("markdown lacks the expectation:\n%s", md.String())
	}
}

func TestPathPlainRender(t *testing.T) {
	r := Path{pathFixture(t, "path-plain-close.json")}
	var table bytes.Buffer
	if err := Render(&table, Table, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "plain server, no counterpart") || !strings.Contains(table.String(), "closes connections idle for 6.0 s") {
		t.Errorf("table:\n%s", table.String())
	}
	exp := 10.0
	r.ExpectAtLeastS = &exp
	if s := r.JUnit(); s.Failures != 1 {
		t.Errorf("the server's own 6 s close fails --expect-at-least 10s: %+v", s)
	}
	line := PathServeLine(path.Measurement{Refused: "bad token"})
	if !strings.Contains(line, "refused: bad token") {
		t.Errorf("serve line %q", line)
	}
}
