// Package reports renders the values kadiag's packages return (socket scans,
// captures, lab runs) as a table for people, JSON for scripts and JUnit XML
// for CI. Packages never print; commands hand their results to this package.
package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Format is an output format selected with --output.
type Format string

// The output formats every command supports.
const (
	Table Format = "table"
	JSON  Format = "json"
	JUnit Format = "junit"
)

// Formats lists the accepted --output values.
var Formats = []Format{Table, JSON, JUnit}

// ErrUnknownFormat is returned (wrapped) by ParseFormat.
var ErrUnknownFormat = errors.New("unknown output format")

// ParseFormat checks an --output value.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w %q (use table, json or junit)", ErrUnknownFormat, s)
}

// Report is a result that can be rendered in every format.
type Report interface {
	// WriteTable writes the human-readable form.
	WriteTable(w io.Writer) error
	// JUnit returns the result as JUnit test suites.
	JUnit() Suites
}

// JSONWriter is implemented by reports that write their JSON themselves,
// because a generic indenting encoder is too slow for their size (a socket
// scan of 100,000 sockets). The document must equal the report's json tags.
type JSONWriter interface {
	WriteJSON(w io.Writer) error
}

// Render writes r to w in format f. JSON is the value itself, marshalled
// with its own field tags, so the JSON contract lives next to the type.
func Render(w io.Writer, f Format, r Report) error {
	switch f {
	case JSON:
		if jw, ok := r.(JSONWriter); ok {
			return jw.WriteJSON(w)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case JUnit:
		return r.JUnit().Write(w)
	case Table, "":
		return r.WriteTable(w)
	}
	return fmt.Errorf("%w %q", ErrUnknownFormat, f)
}
