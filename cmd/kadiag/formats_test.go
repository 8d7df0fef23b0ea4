package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/browser"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/reports"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFile maps a JSON document's "schema" value to its JSON Schema file:
// kadiag.sockets/v1 -> docs/schema/kadiag.sockets.v1.json.
func schemaFile(name string) string {
	return filepath.Join("..", "..", "docs", "schema", strings.ReplaceAll(name, "/", ".")+".json")
}

// validateJSON checks a command's real JSON output against the schema it
// names, with a JSON Schema 2020-12 validator.
func validateJSON(t *testing.T, what, out string) {
	t.Helper()
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal([]byte(out), &head); err != nil || head.Schema == "" {
		t.Fatalf("%s: no schema field in output (%v):\n%s", what, err, out)
	}
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(schemaFile(head.Schema))
	if err != nil {
		t.Fatalf("%s: schema %s: %v", what, head.Schema, err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("%s: output does not match %s:\n%v\n%s", what, schemaFile(head.Schema), err, out)
	}
}

// junitSeen is what junitparser understood of a JUnit file.
type junitSeen struct {
	Tests, Failures, Errors, Skipped int
	Suites                           []struct {
		Name                    string
		Tests, Failures, Errors int
	}
	Cases []struct{ Name, Classname, Result string }
}

// validateJUnit reads a command's JUnit XML with xmllint (well-formed) and
// with junitparser, and checks that the consumer sees the totals the
// document states.
func validateJUnit(t *testing.T, what, out string) junitSeen {
	t.Helper()
	testenv.Need(t, "xmllint")
	f := filepath.Join(t.TempDir(), "junit.xml")
	os.WriteFile(f, []byte(out), 0o644)
	if b, err := exec.Command("xmllint", "--noout", f).CombinedOutput(); err != nil {
		t.Fatalf("%s: xmllint: %v\n%s", what, err, b)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import junitparser").Run(); err != nil {
		testenv.SkipOrFail(t, "python3-junitparser not installed (scripts/debian-packages.txt)")
	}
	b, err := exec.Command("/usr/bin/python3", "testdata/junit_check.py", f).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: junitparser: %v\n%s", what, err, b)
	}
	var seen junitSeen
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	var doc reports.Suites
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if seen.Tests != doc.Tests || seen.Failures != doc.Failures || seen.Errors != doc.Errors {
		t.Errorf("%s: junitparser counts %d tests, %d failures, %d errors; the document says %d, %d, %d",
			what, seen.Tests, seen.Failures, seen.Errors, doc.Tests, doc.Failures, doc.Errors)
	}
	for i, s := range seen.Suites {
		if d := doc.Suites[i]; s.Tests != d.Tests || s.Failures != d.Failures || s.Name != d.Name {
			t.Errorf("%s: suite %d read as %+v, written as %s %d/%d", what, i, s, d.Name, d.Tests, d.Failures)
		}
	}
	return seen
}

// TestEveryCommandEveryFormat runs every command on real processes in every
// output format: JSON against its schema, JUnit through junitparser,
// Markdown and HTML (written with --report) rendered, the exit code the
// same in every format.
func TestEveryCommandEveryFormat(t *testing.T) {
	l := newSockLab(t, 74)
	pid, _ := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))
	p := strconv.Itoa(pid)
	libDir := t.TempDir()
	commands := []struct {
		args     []string
		code     int
		failures int // JUnit failures junitparser must see
	}{
		{[]string{"sockets", "--pid", p}, 1, 1},
		{[]string{"doctor", "--pid", p}, 1, 1},
		{[]string{"preload", "check", "--pid", p}, 1, 3},
		{[]string{"preload", "extract", "--dir", libDir}, 0, 0},
		{[]string{"preload", "env", "--idle", "60s"}, 0, 0},
		{[]string{"preload", "env", "--format", "k8s", "--container", "app"}, 0, 0},
	}
	commands = append(commands, extraFormatCommands(t)...)
	htmlDir := t.TempDir()
	for _, c := range commands {
		name := strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			for _, f := range reports.Formats {
				args := append(append([]string{}, c.args...), "-o", string(f))
				var report string
				if f == reports.HTML {
					report = filepath.Join(htmlDir, strings.ReplaceAll(strings.Fields(name)[0]+strconv.Itoa(len(name)), "/", "_")+".html")
					args = append(args, "--report", report)
				}
				stdout, stderr, code := runKadiag(t, args...)
				if code != c.code {
					t.Errorf("-o %s: exit %d, want %d: %s", f, code, c.code, stderr)
				}
				switch f {
				case reports.JSON:
					validateJSON(t, name, stdout)
				case reports.JUnit:
					if seen := validateJUnit(t, name, stdout); seen.Failures != c.failures {
						t.Errorf("junitparser sees %d failures, want %d:\n%s", seen.Failures, c.failures, stdout)
					}
				case reports.Markdown:
					if !strings.HasPrefix(stdout, "## kadiag") || (c.code == 1) != strings.Contains(stdout, "❌ **FAILED**") {
						t.Errorf("markdown:\n%s", stdout)
					}
				case reports.HTML:
					b, err := os.ReadFile(report)
					if err != nil || stdout != "" || !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) || !bytes.HasSuffix(b, []byte("</html>\n")) {
						t.Errorf("--report %s: %v, stdout %q, file starts %.40q", report, err, stdout, b)
					}
				case reports.Table:
					if strings.Contains(stdout, "\x1b[") {
						t.Errorf("colour in a pipe: %q", stdout)
					}
				}
			}
		})
	}
	// What a person sees: the doctor page in a real browser.
	doctorHTML := filepath.Join(htmlDir, "doctor.html")
	if _, _, code := runKadiag(t, "doctor", "--pid", p, "-o", "html", "--report", doctorHTML); code != 1 {
		t.Fatalf("doctor -o html: exit %d", code)
	}
	img, shot := browser.Screenshot(t, doctorHTML, 1600)
	cs := browser.Colours(img)
	if n := browser.Near(cs, [3]uint8{0xcf, 0x22, 0x2e}, 6); n < 200 {
		t.Errorf("doctor page %s: no FAILED badge / at-risk cell (%d red pixels)", shot, n)
	}
	if dir := os.Getenv("KADIAG_KEEP_SCREENSHOTS"); dir != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(dir, "doctor.png"), b, 0o644)
	}
}

// TestReportFlagErrors: a report path that cannot be written is one line on
// stderr, exit 2, and nothing half-written.
func TestReportFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ path, want string }{
		{dir, "is a directory"},
		{filepath.Join(dir, "missing", "r.html"), "does the directory"},
	} {
		_, stderr, code := runKadiag(t, "preload", "env", "-o", "html", "--report", tt.path)
		if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("--report %s: exit %d, stderr %q", tt.path, code, stderr)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	_ = fmt.Sprint()
}

// TestReportFiles: one run, several report files, each in the format its
// extension names; stdout keeps the table.
func TestReportFiles(t *testing.T) {
	dir := t.TempDir()
	paths := map[string]string{}
	args := []string{"preload", "env", "--idle", "60s"}
	for _, ext := range []string{"json", "xml", "md", "html"} {
		paths[ext] = filepath.Join(dir, "r."+ext)
		args = append(args, "--report", paths[ext])
	}
	stdout, stderr, code := runKadiag(t, args...)
	if code != 0 || !strings.HasPrefix(stdout, "export LD_PRELOAD=") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	read := func(ext string) string {
		b, err := os.ReadFile(paths[ext])
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	validateJSON(t, "r.json", read("json"))
	validateJUnit(t, "r.xml", read("xml"))
	if !strings.HasPrefix(read("md"), "## kadiag") || !strings.HasPrefix(read("html"), "<!DOCTYPE html>") {
		t.Errorf("md %.20q html %.20q", read("md"), read("html"))
	}
	// A file in -o's own format takes it: stdout stays empty.
	paths["txt"] = filepath.Join(dir, "r.txt")
	again, _, code := runKadiag(t, "preload", "env", "--idle", "60s", "--report", paths["txt"])
	if code != 0 || again != "" || read("txt") != stdout {
		t.Errorf("--report r.txt: exit %d, stdout %q, file %q", code, again, read("txt"))
	}
}
