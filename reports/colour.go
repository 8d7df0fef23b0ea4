package reports

import (
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ANSI colours of the table's verdicts.
const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// IsTerminal reports whether w is a terminal (a character device that
// answers the terminal ioctl), the test isatty(3) makes.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ColourEnabled reports whether tables written to w are coloured: only on a
// terminal, never when NO_COLOR is set to anything (https://no-color.org),
// never for TERM=dumb.
func ColourEnabled(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return IsTerminal(w)
}

// verdictColumns are the table headers whose cells carry a verdict.
var verdictColumns = []string{"VERDICT", "RESULT", "OK"}

// Colourize colours the verdict cells of every table in text (the column
// under a VERDICT, RESULT or OK header, up to the next blank line) and the
// header rows in bold. Layout is done first, colour after: tabwriter would
// count escape bytes as width and misalign the columns.
func Colourize(text string) string {
	lines := strings.Split(text, "\n")
	start, end := -1, -1
	for i, line := range lines {
		if line == "" {
			start = -1
			continue
		}
		if s, e, ok := verdictColumn(line); ok {
			start, end = s, e
			lines[i] = ansiBold + line + ansiReset
			continue
		}
		switch {
		case strings.HasPrefix(line, "warning:"), strings.HasPrefix(line, "note:"):
			lines[i] = ansiYellow + line + ansiReset
			continue
		case strings.HasSuffix(line, "): AT RISK"):
			lines[i] = strings.TrimSuffix(line, "AT RISK") + ansiRed + ansiBold + "AT RISK" + ansiReset
			continue
		case strings.HasSuffix(line, "): OK") && strings.HasPrefix(line, "pid "):
			lines[i] = strings.TrimSuffix(line, "OK") + ansiGreen + ansiBold + "OK" + ansiReset
			continue
		case strings.HasPrefix(line, "problem:"):
			lines[i] = ansiRed + line + ansiReset
			continue
		case strings.Contains(line, ": preload NOT EFFECTIVE"):
			lines[i] = strings.Replace(line, "NOT EFFECTIVE", ansiRed+ansiBold+"NOT EFFECTIVE"+ansiReset, 1)
			continue
		case strings.Contains(line, ": preload EFFECTIVE"):
			lines[i] = strings.Replace(line, "EFFECTIVE", ansiGreen+ansiBold+"EFFECTIVE"+ansiReset, 1)
			continue
		}
		if start < 0 {
			continue
		}
		r := []rune(line)
		if start >= len(r) {
			continue
		}
		e := min(end, len(r))
		if end < 0 {
			e = len(r)
		}
		cell := strings.TrimRight(string(r[start:e]), " ")
		if c := verdictColour(cell); c != "" {
			lines[i] = string(r[:start]) + c + cell + ansiReset + string(r[start+len([]rune(cell)):])
		}
	}
	return strings.Join(lines, "\n")
}

// verdictColumn finds a verdict header in a header line (all capitals) and
// returns the rune range of its column: up to the next header, or -1.
func verdictColumn(line string) (int, int, bool) {
	if strings.ToUpper(line) != line || !strings.Contains(line, "  ") {
		return 0, 0, false
	}
	r := []rune(line)
	for _, h := range verdictColumns {
		for i := 0; i+len(h) <= len(r); i++ {
			if string(r[i:i+len(h)]) != h || (i > 0 && r[i-1] != ' ') ||
				(i+len(h) < len(r) && r[i+len(h)] != ' ') {
				continue
			}
			j := i + len(h)
			for j < len(r) && r[j] == ' ' {
				j++
			}
			if j == len(r) {
				return i, -1, true
			}
			return i, j, true
		}
	}
	return 0, 0, false
}

func verdictColour(cell string) string {
	switch {
	case cell == "ok", cell == "as expected", cell == "pass":
		return ansiGreen
	case cell == "at-risk", cell == "UNEXPECTED", strings.HasPrefix(cell, "NO"), strings.HasPrefix(cell, "at-risk"),
		strings.Contains(cell, "assert-failed"), cell == "FAIL":
		return ansiRed
	case cell == "unknown", cell == "local":
		return ansiYellow
	}
	return ""
}
