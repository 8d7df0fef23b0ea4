package nodebox

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxIdle is a parsed --max-idle: a fixed middlebox timeout, or "auto"
// (the smallest timeout the node can see for each flow), optionally with a
// declared hop the node cannot see: "auto,aws-nat", "auto,@path.json".
type MaxIdle struct {
	// Auto: judge each socket against what applies to it on this node.
	Auto bool
	// Declared is the fixed or declared timeout, zero for "auto" alone.
	Declared time.Duration
	// DeclaredName is how it was given ("aws-nat", "350s").
	DeclaredName string
}

// ErrBadMaxIdle wraps an "auto,…" whose declared part does not parse.
var ErrBadMaxIdle = errors.New("bad --max-idle")

// ParseMaxIdle reads --max-idle: "auto", "auto,X" or X, where X is what
// parse accepts (middlebox.ParseIdle: a duration, a preset, @path.json).
func ParseMaxIdle(s string, parse func(string) (time.Duration, error)) (MaxIdle, error) {
	rest, auto := strings.CutPrefix(s, "auto")
	if auto && rest == "" {
		return MaxIdle{Auto: true}, nil
	}
	if auto {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, ","); !ok {
			// Not "auto": a preset or file whose name starts so.
			rest, auto = s, false
		}
	}
	d, err := parse(rest)
	if err != nil {
		if auto {
			return MaxIdle{}, fmt.Errorf("%w %q: after auto, %w", ErrBadMaxIdle, s, err)
		}
		return MaxIdle{}, err
	}
	return MaxIdle{Auto: auto, Declared: d, DeclaredName: rest}, nil
}
