package preload

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// FuzzParseDuration: a value is a whole number of its unit, never negative,
// and its canonical spelling reads back the same; anything else is an
// ErrBadValue.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90", "90s", "5m", "1h", "250ms", "", "-1", "1.5s", "2147483647", "2147483648",
		"2147483647h", "00000000000001s", "1ms ", "1MS"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, allowMS bool) {
		d, err := ParseDuration(s, allowMS)
		if err != nil {
			if !errors.Is(err, ErrBadValue) {
				t.Fatalf("ParseDuration(%q): %v", s, err)
			}
			return
		}
		if d < 0 || d%time.Millisecond != 0 || (!allowMS && d%time.Second != 0) {
			t.Fatalf("ParseDuration(%q, %v) = %v", s, allowMS, d)
		}
		canon := strconv.FormatInt(d.Milliseconds(), 10) + "ms"
		if d%time.Second == 0 {
			canon = strconv.FormatInt(int64(d/time.Second), 10)
		}
		if back, err := ParseDuration(canon, true); d <= MaxUserTimeout && (err != nil || back != d) {
			t.Fatalf("ParseDuration(%q) = %v; %q reads back as %v, %v", s, d, canon, back, err)
		}
	})
}
