package path

import "time"

// Ratio is the step between neighbouring grid points that bounds the
// midpoint's error by precision: a bracket [a, a·r] has its midpoint
// within (r−1)/(r+1) of every value in it, so r = (1+p)/(1−p).
func Ratio(precision float64) float64 { return (1 + precision) / (1 - precision) }

// Grid is the idle durations tested: log-spaced from min by Ratio(precision),
// ending with max (no step wider than the ratio), rounded to milliseconds.
// From 10 s to 2 h at 2 % it has 166 points.
func Grid(min, max time.Duration, precision float64) []time.Duration {
	r := Ratio(precision)
	var out []time.Duration
	for d := float64(min); d < float64(max)*(1-1e-6); d *= r {
		out = append(out, time.Duration(d).Round(time.Millisecond))
	}
	return append(out, max.Round(time.Millisecond))
}
