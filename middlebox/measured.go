package middlebox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strings"
	"time"
)

// ErrBadMeasurement is returned (wrapped) for an @file that is no
// measurement of `kadiag path -o json`, or one that measured no timeout.
var ErrBadMeasurement = errors.New("bad path measurement")

// measuredSchema is the contract of `kadiag path -o json` (path.Schema;
// middlebox cannot import path, which builds on it).
const measuredSchema = "kadiag.path/v1"

// ReadMeasured reads the idle timeout a path measurement found in file:
// the shortest over its directions, since a flow is lost as soon as either
// direction is. This is what --max-idle @path.json means.
func ReadMeasured(file string) (time.Duration, error) {
	if strings.TrimSpace(file) == "" {
		return 0, fmt.Errorf("%w: @ needs a file name (--max-idle @path.json, the output of kadiag path -o json)", ErrBadMeasurement)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// Quote the name: it is the user's text and may hold anything.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return 0, fmt.Errorf("%w: cannot read %q: %w", ErrBadMeasurement, file, err)
	}
	var m struct {
		Schema     string `json:"schema"`
		Target     string `json:"target"`
		Directions map[string]struct {
			IdleTimeoutS *float64    `json:"idle_timeout_s"`
			BracketS     [2]*float64 `json:"bracket_s"`
		} `json:"directions"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Schema != measuredSchema {
		return 0, fmt.Errorf("%w: %q is not the JSON of `kadiag path -o json` (schema %s)", ErrBadMeasurement, file, measuredSchema)
	}
	best, kept := math.Inf(1), 0.0
	for _, d := range m.Directions {
		if d.IdleTimeoutS != nil && *d.IdleTimeoutS > 0 {
			best = math.Min(best, *d.IdleTimeoutS)
		}
		if d.BracketS[0] != nil {
			kept = math.Max(kept, *d.BracketS[0])
		}
	}
	if math.IsInf(best, 1) {
		return 0, fmt.Errorf("%w: %q measured no idle timeout to %q (flows survived %gs): give the limit as a duration", ErrBadMeasurement, file, m.Target, kept)
	}
	return time.Duration(best * float64(time.Second)).Round(time.Millisecond), nil
}

// measuredRef returns the file of an "@file" idle limit.
func measuredRef(s string) (string, bool) {
	return strings.CutPrefix(strings.TrimSpace(s), "@")
}
