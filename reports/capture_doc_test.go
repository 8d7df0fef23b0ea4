package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/capture"
	"github.com/kadiag/kadiag/internal/browser"
)

// TestCaptureTimelines reads a real capture with timelines on: every probe,
// answer and RST the analysis counted is a mark on its flow's lane, the
// JSON is unchanged by the timeline, and the page renders in Chromium.
func TestCaptureTimelines(t *testing.T) {
	path := filepath.Join("..", "testdata", "capture", "eth.pcap")
	res, err := capture.ReadFile(path, capture.Options{MaxIdle: 3 * time.Second, Timeline: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := capture.ReadFile(path, capture.Options{MaxIdle: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	Render(&a, JSON, Capture{Result: res})
	Render(&b, JSON, Capture{Result: plain})
	if a.String() != b.String() {
		t.Errorf("the timeline changed the JSON contract")
	}
	d := Capture{Result: res}.Document()
	var lanes []Timeline
	for _, s := range d.Sections {
		lanes = append(lanes, s.Timelines...)
	}
	if len(lanes) != len(res.Flows) {
		t.Fatalf("%d lanes for %d flows", len(lanes), len(res.Flows))
	}
	expiries := 0
	for _, f := range res.Flows {
		var lane *Timeline
		for i := range lanes {
			if lanes[i].Title == f.Client+" → "+f.Server {
				lane = &lanes[i]
			}
		}
		if lane == nil {
			t.Fatalf("no lane for %s", f.Client)
		}
		n := map[EventKind]int{}
		for _, e := range lane.Events {
			n[e.Kind]++
		}
		if n[EventProbe] != f.Probes || n[EventProbeAck] != f.ProbeAcks || n[EventRST] != f.RSTs {
			t.Errorf("%s: lane has %d probes, %d answers, %d RSTs; the analysis counted %d, %d, %d",
				lane.Title, n[EventProbe], n[EventProbeAck], n[EventRST], f.Probes, f.ProbeAcks, f.RSTs)
		}
		if want := f.MaxGapS >= 3; (n[EventExpiry] == 1) != want {
			t.Errorf("%s: longest silence %gs, %d expiry marks", lane.Title, f.MaxGapS, n[EventExpiry])
		}
		expiries += n[EventExpiry]
	}
	if expiries == 0 {
		t.Errorf("no flow of the fixture is silent for 3s: the expiry is untested")
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, d); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "capture.html")
	os.WriteFile(file, page.Bytes(), 0o644)
	img, shot := browser.Screenshot(t, file, 1500)
	cs := browser.Colours(img)
	for name, c := range map[string][3]uint8{"probe": {0xbc, 0x4c, 0x00}, "answer": {0x1a, 0x7f, 0x37}, "expiry": {0xcf, 0x22, 0x2e}} {
		if browser.Near(cs, c, 6) < 30 {
			t.Errorf("screenshot %s shows no %s marks", shot, name)
		}
	}
	if !strings.Contains(page.String(), "<svg") {
		t.Error("no SVG")
	}
}
