package reports

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// WriteMarkdown writes d as GitHub-flavoured Markdown, suitable for
// $GITHUB_STEP_SUMMARY and pull-request comments: a heading, a status line,
// tables (cells escaped so a "|" cannot break them) and fenced code.
func WriteMarkdown(w io.Writer, d Document) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", mdInline(d.Title))
	if d.Summary != "" || d.Status != "" {
		fmt.Fprintf(&b, "%s %s\n\n", statusBadge(d.Status), mdInline(d.Summary))
	}
	for _, s := range d.Sections {
		if s.Heading != "" {
			fmt.Fprintf(&b, "### %s\n\n", mdInline(s.Heading))
		}
		for _, p := range s.Text {
			fmt.Fprintf(&b, "%s\n\n", mdInline(p))
		}
		for _, l := range s.List {
			fmt.Fprintf(&b, "- %s\n", mdInline(l))
		}
		if len(s.List) > 0 {
			b.WriteString("\n")
		}
		if s.Grid != nil && len(s.Grid.Rows) > 0 {
			writeMarkdownGrid(&b, s.Grid)
		}
		if s.Code != "" {
			fence := "```"
			for strings.Contains(s.Code, fence) {
				fence += "`"
			}
			fmt.Fprintf(&b, "%s%s\n%s", fence, s.CodeLang, s.Code)
			if !strings.HasSuffix(s.Code, "\n") {
				b.WriteString("\n")
			}
			b.WriteString(fence + "\n\n")
		}
		// Markdown goes into job summaries and PR comments: only the lanes
		// with a problem are listed; the HTML report draws them all.
		quiet := 0
		for _, t := range s.Timelines {
			if t.Tone == Good {
				quiet++
				continue
			}
			writeMarkdownTimeline(&b, t)
		}
		if quiet > 0 {
			fmt.Fprintf(&b, "%d timeline(s) without a problem are drawn in the HTML report (-o html).\n\n", quiet)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusBadge(s Status) string {
	switch s {
	case StatusOK:
		return "✅ **OK**"
	case StatusFailed:
		return "❌ **FAILED**"
	}
	return "ℹ️"
}

func toneMark(t Tone) string {
	switch t {
	case Good:
		return "✅ "
	case Bad:
		return "❌ "
	case Warn:
		return "⚠️ "
	}
	return ""
}

func writeMarkdownGrid(b *strings.Builder, g *Grid) {
	b.WriteString("|")
	for _, h := range g.Header {
		fmt.Fprintf(b, " %s |", mdCell(h))
	}
	b.WriteString("\n|")
	for range g.Header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range g.Rows {
		b.WriteString("|")
		for i := range g.Header {
			var c Cell
			if i < len(row) {
				c = row[i]
			}
			fmt.Fprintf(b, " %s%s |", toneMark(c.Tone), mdCell(c.Text))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func writeMarkdownTimeline(b *strings.Builder, t Timeline) {
	fmt.Fprintf(b, "**%s**", mdInline(t.Title))
	if t.Outcome != "" {
		fmt.Fprintf(b, ": %s%s", toneMark(t.Tone), mdInline(t.Outcome))
	}
	b.WriteString("\n\n| t | event |\n|---|---|\n")
	var evs []Event
	for _, e := range t.Events {
		if e.Kind != EventAck {
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].T < evs[j].T })
	for _, e := range compressEvents(evs) {
		label := e.Kind.Describe()
		if e.Label != "" {
			label = e.Label
		}
		fmt.Fprintf(b, "| %s | %s |\n", mdCell(fmtSeconds(e.T)), mdCell(label))
	}
	b.WriteString("\n")
}

// compressEvents folds long runs of unlabelled events of one kind, or of
// probes and their answers (hundreds in a long capture), into the first
// two, a line counting the rest, and the last two, so Markdown stays readable.
func compressEvents(evs []Event) []Event {
	same := func(a, b Event) bool {
		if a.Label != "" || b.Label != "" {
			return false
		}
		isProbe := func(k EventKind) bool { return k == EventProbe || k == EventProbeAck }
		return a.Kind == b.Kind || (isProbe(a.Kind) && isProbe(b.Kind))
	}
	var out []Event
	for i := 0; i < len(evs); {
		j := i
		for j+1 < len(evs) && same(evs[i], evs[j+1]) {
			j++
		}
		if n := j - i + 1; n > 6 {
			probes, acks := 0, 0
			for _, e := range evs[i+2 : j-1] {
				switch e.Kind {
				case EventProbe:
					probes++
				case EventProbeAck:
					acks++
				}
			}
			label := fmt.Sprintf("… %d more %s until %s", n-4, evs[i].Kind.Describe(), fmtSeconds(evs[j-2].T))
			if probes+acks > 0 {
				label = fmt.Sprintf("… %d more probes, %d answered, until %s", probes, acks, fmtSeconds(evs[j-2].T))
			}
			out = append(out, evs[i], evs[i+1], Event{T: evs[i+2].T, Kind: evs[i].Kind, Label: label}, evs[j-1], evs[j])
		} else {
			out = append(out, evs[i:j+1]...)
		}
		i = j + 1
	}
	return out
}

func fmtSeconds(s float64) string {
	return strconv.FormatFloat(math.Round(s*1000)/1000, 'f', -1, 64) + "s"
}

// mdInline escapes the characters that would start Markdown markup inside
// running text taken from the outside world (reasons, addresses, commands).
func mdInline(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "<", "&lt;", "](", `\](`, "\n", " ")
	return r.Replace(s)
}

func mdCell(s string) string {
	return strings.ReplaceAll(mdInline(s), "|", `\|`)
}
