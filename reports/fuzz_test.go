package reports

import (
	"math"
	"strings"
	"testing"
	"time"
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
