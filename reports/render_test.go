package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
)

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// sampleSockets is a scan as inspect returns it, with a socket of every verdict.
func sampleSockets() Sockets {
	r := &inspect.Report{Schema: inspect.Schema, MaxIdleS: 350,
		Processes: []inspect.Process{{PID: 42, Comm: "java", Netns: "net:[4026531840]",
			Sysctl: inspect.Sysctl{KeepaliveTime: 7200, KeepaliveIntvl: 75, KeepaliveProbes: 9},
			Sockets: []inspect.Socket{
				{FD: 7, State: "ESTABLISHED", Local: "198.18.1.2:40000", Remote: "198.18.1.1:443", Verdict: inspect.AtRisk,
					Reason: "keepalive off: the flow can sit idle | forever", Keepalive: inspect.Keepalive{Source: inspect.Exact}},
				{FD: 8, State: "ESTABLISHED", Local: "198.18.1.2:40001", Remote: "198.18.1.1:443", Verdict: inspect.OK, DeadPeerS: 120,
					Keepalive: inspect.Keepalive{Enabled: true, IdleS: 60, IntervalS: 15, Count: 4, Source: inspect.Exact}},
				{FD: 9, State: "ESTABLISHED", Local: "127.0.0.1:1", Remote: "127.0.0.1:2", Verdict: inspect.Local},
			}}},
		Summary: inspect.Summary{Sockets: 3, OK: 1, AtRisk: 1, Local: 1}}
	return Sockets{Report: r}
}

func TestEveryFormatRendersEveryReport(t *testing.T) {
	reports := map[string]Report{"sockets": sampleSockets(), "extract": PreloadExtract{Schema: "x", Path: "/tmp/lib.so"}}
	for name, r := range reports {
		for _, f := range Formats {
			var b bytes.Buffer
			if err := Render(&b, f, r); err != nil {
				t.Errorf("%s -o %s: %v", name, f, err)
			}
			if b.Len() == 0 {
				t.Errorf("%s -o %s: empty", name, f)
			}
			if f == JSON && !json.Valid(b.Bytes()) {
				t.Errorf("%s -o json: invalid JSON", name)
			}
		}
	}
}

func TestMarkdownCellsStayInTheirColumn(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, Markdown, sampleSockets()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| 7 |") {
			continue
		}
		// Nine columns: ten unescaped pipes, whatever the reason says.
		if n := len(regexp.MustCompile(`(^|[^\\])\|`).FindAllString(line, -1)); n != 10 {
			t.Errorf("row has %d cell separators, want 10: %s", n, line)
		}
	}
	for _, want := range []string{"## kadiag sockets", "❌ **FAILED**", "| fd | state |", "❌ at-risk", "✅ ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestColourizeKeepsAlignment(t *testing.T) {
	var plain bytes.Buffer
	s := sampleSockets()
	if err := s.WriteTable(&plain); err != nil {
		t.Fatal(err)
	}
	col := Colourize(plain.String())
	if ansi.ReplaceAllString(col, "") != plain.String() {
		t.Fatalf("colour changed the text:\n%s\nvs\n%s", col, plain.String())
	}
	if !strings.Contains(col, ansiRed+"at-risk"+ansiReset) || !strings.Contains(col, ansiGreen+"ok"+ansiReset) {
		t.Errorf("verdicts not coloured:\n%q", col)
	}
}

// TestColourOnlyOnATerminal renders into a real pty and into a pipe, with
// and without NO_COLOR.
func TestColourOnlyOnATerminal(t *testing.T) {
	m, s := testenv.OpenPTY(t)
	t.Setenv("TERM", "xterm")
	t.Setenv("NO_COLOR", "")
	if err := Render(s, Table, sampleSockets()); err != nil {
		t.Fatal(err)
	}
	if out := readPty(t, m); !ansi.MatchString(out) {
		t.Errorf("no colour on a terminal: %q", out)
	}
	t.Setenv("NO_COLOR", "1")
	if err := Render(s, Table, sampleSockets()); err != nil {
		t.Fatal(err)
	}
	if out := readPty(t, m); ansi.MatchString(out) || out == "" {
		t.Errorf("NO_COLOR ignored: %q", out)
	}
	t.Setenv("NO_COLOR", "")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { Render(w, Table, sampleSockets()); w.Close() }()
	out, _ := io.ReadAll(r)
	if ansi.Match(out) {
		t.Errorf("colour in a pipe: %q", out)
	}
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b)
	p.Update(time.Second, time.Minute, "middlebox forgets the flow")
	p.Done()
	if b.Len() != 0 || p.Active() {
		t.Errorf("progress wrote to a buffer: %q", b.String())
	}
	var nilP *Progress
	nilP.Update(0, 0, "")
	nilP.Done()

	m, s := testenv.OpenPTY(t)
	p = NewProgress(s)
	p.Update(65*time.Second, 6*time.Minute, "middlebox forgets the flow at 5:50")
	p.Done()
	out := readPty(t, m)
	for _, want := range []string{"\r\x1b[K1:05 / 6:00 [####....", " 18%", "next: middlebox forgets the flow at 5:50"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress on a pty lacks %q: %q", want, out)
		}
	}
	if !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("Done did not clear the line: %q", out)
	}
	if got := ProgressLine(2*time.Hour+3*time.Second, 0, ""); got != "2:00:03" {
		t.Errorf("ProgressLine without expected = %q", got)
	}
}

func TestWriteFileIsAtomic(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	os.WriteFile(target, []byte("keep me"), 0o600)
	link := filepath.Join(dir, "report.html")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, func(w io.Writer) error { _, err := io.WriteString(w, "<html>"); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("the symlink was followed: target now %q", b)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm() != 0o644 {
		t.Errorf("report is %v, want a regular 0644 file", fi.Mode())
	}
	boom := errors.New("boom")
	err := WriteFile(link, func(w io.Writer) error { io.WriteString(w, "half"); return boom })
	if !errors.Is(err, boom) {
		t.Errorf("error = %v", err)
	}
	if b, _ := os.ReadFile(link); string(b) != "<html>" {
		t.Errorf("a failed write changed the report: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := WriteFile(dir, func(io.Writer) error { return nil }); !errors.Is(err, ErrReportPath) {
		t.Errorf("directory as report: %v", err)
	}
	if err := WriteFile(filepath.Join(dir, "no/such/dir/r.html"), func(io.Writer) error { return nil }); !errors.Is(err, ErrReportPath) {
		t.Errorf("missing directory: %v", err)
	}
}
