package reports

import (
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/capture"
	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/preload"
)

// FuzzHumanDuration: every duration, including the extremes a broken
// capture produces, renders as one short token without recursing forever.
func FuzzHumanDuration(f *testing.F) {
	for _, d := range []int64{0, 1, -1, int64(time.Hour), math.MaxInt64, math.MinInt64, math.MinInt64 + 1, int64(90 * time.Minute)} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		s := HumanDuration(time.Duration(n))
		if s == "" || len(s) > 32 || strings.ContainsAny(s, " \n\t") {
			t.Fatalf("HumanDuration(%d) = %q", n, s)
		}
		if (n < 0) != strings.HasPrefix(s, "-") {
			t.Fatalf("HumanDuration(%d) = %q: sign lost", n, s)
		}
	})
}

// FuzzSecs covers the float seconds of capture reports, NaN and infinities too.
func FuzzSecs(f *testing.F) {
	for _, v := range []float64{0, 1.5, -3, 1e300, -1e300, math.Inf(1), math.NaN(), 9.3e9, 4e9} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if s := secs(v); s == "" || strings.Contains(s, "\n") {
			t.Fatalf("secs(%v) = %q", v, s)
		}
	})
}

// FuzzJSONContracts decodes arbitrary JSON into every result type whose JSON
// is a kadiag contract (what a script or the exporter reads back), then
// renders the decoded value in every format: whatever the values (negative,
// huge, missing, null), rendering gives output or an error, never a panic.
func FuzzJSONContracts(f *testing.F) {
	f.Add(uint8(0), []byte(`{"schema":"kadiag.sockets/v1","processes":[{"pid":1,"sockets":[{"state":"ESTABLISHED","keepalive":{"enabled":true,"idle_s":-5}}]}]}`))
	f.Add(uint8(1), []byte(`{"schema":"kadiag.capture/v1","flows":[{"client":"a","server":"b","max_gap_s":1e308,"probe_interval_s":{"min_s":-1}}]}`))
	f.Add(uint8(2), []byte(`{"pid":-1,"sockets":[{"fd":3}],"loaded":null}`))
	f.Add(uint8(0), []byte(`null`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		var r Report
		switch kind % 3 {
		case 0:
			var v inspect.Report
			if json.Unmarshal(data, &v) != nil {
				return
			}
			r = Sockets{&v}
		case 1:
			var v capture.Result
			if json.Unmarshal(data, &v) != nil {
				return
			}
			r = Capture{&v}
		case 2:
			var v preload.CheckResult
			if json.Unmarshal(data, &v) != nil {
				return
			}
			r = PreloadCheck{&v}
		}
		for _, f := range Formats {
			Render(io.Discard, f, r)
		}
	})
}
