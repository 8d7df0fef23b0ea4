package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/browser"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/reports"
	"github.com/kadiag/kadiag/simulate"
)

// TestSimulateReports runs one real (scaled) lab with stderr on a terminal
// and every report written from the same run: the progress line is drawn
// and cleared, the JSON matches its schema, junitparser reads the JUnit
// with one case per scenario, the Markdown lists the failing scenario's
// timeline, and the HTML in Chromium shows the expiry and the probes.
func TestSimulateReports(t *testing.T) {
	testenv.Privileged(t)
	dir := t.TempDir()
	m, s := testenv.OpenPTY(t)
	out := drain(m)
	args := []string{"simulate", "--idle", "70s", "--scale", "35", "--scenario", "none,preload"}
	for _, ext := range []string{"json", "xml", "md", "html"} {
		args = append(args, "--report", filepath.Join(dir, "sim."+ext))
	}
	cmd := exec.Command(buildKadiag(t), args...)
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, s
	err := cmd.Run()
	s.Close()
	progress := <-out
	if err != nil {
		t.Fatalf("simulate: %v\n%s\n%s", err, stdout.String(), progress)
	}
	if !strings.Contains(progress, "next: the middlebox forgets idle flows at 2s") || !strings.HasSuffix(progress, "\r\x1b[K") {
		t.Errorf("progress on the terminal: %q", progress)
	}
	read := func(ext string) string {
		b, err := os.ReadFile(filepath.Join(dir, "sim."+ext))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	validateJSON(t, "simulate", read("json"))
	var res simulate.Result
	if err := json.Unmarshal([]byte(read("json")), &res); err != nil {
		t.Fatal(err)
	}
	seen := validateJUnit(t, "simulate", read("xml"))
	if seen.Tests != 2 || seen.Failures != 0 {
		t.Errorf("junitparser: %+v", seen)
	}
	var suites reports.Suites
	xml.Unmarshal([]byte(read("xml")), &suites)
	md := read("md")
	if !strings.Contains(md, "**none**") || !strings.Contains(md, "middlebox forgets the flow") {
		t.Errorf("markdown lacks the none scenario's timeline:\n%s", md)
	}
	// The timeline marks what the lab counted, no more, no less.
	html := read("html")
	for _, sc := range res.Scenarios {
		if sc.Name == "preload" && sc.Probes == 0 {
			t.Errorf("preload scenario sent no probes: %+v", sc)
		}
	}
	if n := strings.Count(html, "keepalive probe from the client</title>"); n != res.Scenarios[0].Probes+res.Scenarios[1].Probes {
		t.Errorf("HTML draws %d probes, the lab counted %d+%d", n, res.Scenarios[0].Probes, res.Scenarios[1].Probes)
	}
	img, shot := browser.Screenshot(t, filepath.Join(dir, "sim.html"), 1400)
	cs := browser.Colours(img)
	for name, c := range map[string][3]uint8{"probe": {0xbc, 0x4c, 0x00}, "answer": {0x1a, 0x7f, 0x37}, "expiry": {0xcf, 0x22, 0x2e}, "forgotten band": {0xff, 0xeb, 0xe9}} {
		if browser.Near(cs, c, 6) < 30 {
			t.Errorf("screenshot %s shows no %s", shot, name)
		}
	}
	if d := os.Getenv("KADIAG_KEEP_SCREENSHOTS"); d != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(d, "simulate.png"), b, 0o644)
	}
}
