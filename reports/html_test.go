package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/browser"
)

// labTimeline is what a simulate lab without keepalive looks like: request,
// silence, the middlebox forgets, the reply is refused with a reset.
func labTimeline() Timeline {
	return Timeline{Title: "none: keepalive off", Outcome: "reset after 10.2s", Tone: Bad, EndS: 11, LimitS: 5,
		Events: []Event{{T: 0, Kind: EventData, Label: "request"}, {T: 0.001, Kind: EventNote, Label: "conntrack new"},
			{T: 5.002, Kind: EventExpiry}, {T: 10.1, Kind: EventData, Label: "response sent"}, {T: 10.101, Kind: EventRST}}}
}

func probeTimeline() Timeline {
	t := Timeline{Title: "preload: keepalive idle 2s", Outcome: "response after 10s", Tone: Good, EndS: 11, LimitS: 5,
		Events: []Event{{T: 0, Kind: EventData, Label: "request"}}}
	for at := 2.0; at < 10; at += 1 {
		t.Events = append(t.Events, Event{T: at, Kind: EventProbe}, Event{T: at + 0.001, Kind: EventProbeAck})
	}
	t.Events = append(t.Events, Event{T: 10.1, Kind: EventResponse})
	return t
}

// TestHTMLInChromium renders a report with timelines in headless Chromium
// and checks the screenshot shows them: the page is not blank, and the red
// of the expiry band and the probe marks' orange are on screen.
func TestHTMLInChromium(t *testing.T) {
	d := sampleSockets().Document()
	d.Sections = append(d.Sections, Section{Heading: "Lab", Timelines: []Timeline{labTimeline(), probeTimeline()}})
	var b bytes.Buffer
	if err := WriteHTML(&b, d); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "http://", "https://", "@import", "url("} {
		if bad == "http://" {
			page = strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		}
		if strings.Contains(page, bad) {
			t.Errorf("page is not self-contained: contains %q", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, shot := browser.Screenshot(t, path, 1400)
	cs := browser.Colours(img)
	total := img.Bounds().Dx() * img.Bounds().Dy()
	if bg := browser.Near(cs, [3]uint8{0xf6, 0xf7, 0xf9}, 2) + browser.Near(cs, [3]uint8{0xff, 0xff, 0xff}, 2); bg > total*97/100 {
		t.Errorf("screenshot %s is blank: %d of %d pixels background", shot, bg, total)
	}
	for name, c := range map[string][3]uint8{"forgotten band": {0xff, 0xeb, 0xe9}, "probe orange": {0xbc, 0x4c, 0x00},
		"expiry/RST red": {0xcf, 0x22, 0x2e}, "status FAILED red": {0xcf, 0x22, 0x2e}} {
		if n := browser.Near(cs, c, 6); n < 30 {
			t.Errorf("screenshot %s: %s (%v) on %d pixels only", shot, name, c, n)
		}
	}
	if dir := os.Getenv("KADIAG_KEEP_SCREENSHOTS"); dir != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(dir, "reports-html.png"), b, 0o644)
		os.WriteFile(filepath.Join(dir, "reports-html.html"), []byte(page), 0o644)
	}
}

func TestTimelineMarkdown(t *testing.T) {
	var b bytes.Buffer
	WriteMarkdown(&b, Document{Title: "lab", Sections: []Section{{Timelines: []Timeline{probeTimeline(), labTimeline()}}}})
	probes := probeTimeline()
	probes.Tone = Warn
	b.Reset()
	WriteMarkdown(&b, Document{Title: "lab", Sections: []Section{{Timelines: []Timeline{probes, labTimeline(), probeTimeline()}}}})
	out := b.String()
	for _, want := range []string{"**none: keepalive off**: ❌ reset after 10.2s", "| 5.002s | middlebox forgets the flow |",
		"| 10.101s | reset (RST) |", "| 3s | … 6 more probes, 6 answered, until 8.001s |", "1 timeline(s) without a problem"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}
