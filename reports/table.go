package reports

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// NewTable returns a tabwriter that aligns tab-separated columns the way
// every kadiag table is laid out. Call Flush when done.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// HumanDuration prints a duration the way people read timeouts: whole hours
// as "2h", whole minutes from ten minutes on as "20m" or "1h30m", anything
// else in seconds ("350s", "7875s", "1.5s") and sub-second values in ms.
func HumanDuration(d time.Duration) string {
	switch {
	case d == math.MinInt64:
		// -d overflows back to itself; the nanosecond lost is invisible.
		return "-" + HumanDuration(math.MaxInt64)
	case d < 0:
		return "-" + HumanDuration(-d)
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", int64(d/time.Hour))
	case d >= 10*time.Minute && d%time.Minute == 0:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if h == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// Seconds renders a whole number of seconds as a human duration.
func Seconds(s int) string { return HumanDuration(time.Duration(s) * time.Second) }
