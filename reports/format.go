// Package reports renders the values kadiag's packages return (socket scans,
// captures, lab runs) as a table for people, JSON for scripts, JUnit XML for
// CI, Markdown for job summaries and pull-request comments, and one
// self-contained HTML file with SVG timelines. Packages never print;
// commands hand their results to this package.
package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// Format is an output format selected with --output.
type Format string

// The output formats every command supports.
const (
	Table    Format = "table"
	JSON     Format = "json"
	JUnit    Format = "junit"
	Markdown Format = "markdown"
	HTML     Format = "html"
)

// Formats lists the accepted --output values.
var Formats = []Format{Table, JSON, JUnit, Markdown, HTML}

// ErrUnknownFormat is returned (wrapped) by ParseFormat.
var ErrUnknownFormat = errors.New("unknown output format")

// ParseFormat checks an --output value. "md" is accepted for markdown.
func ParseFormat(s string) (Format, error) {
	if s == "md" {
		return Markdown, nil
	}
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w %q (use table, json, junit, markdown or html)", ErrUnknownFormat, s)
}

// FormatForFile picks a report file's format from its extension: .json,
// .xml (JUnit), .md, .html/.htm, .txt (table); any other extension gets def.
func FormatForFile(path string, def Format) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return JSON
	case ".xml":
		return JUnit
	case ".md", ".markdown":
		return Markdown
	case ".html", ".htm":
		return HTML
	case ".txt":
		return Table
	}
	return def
}

// Report is a result that can be rendered in every format. The Markdown and
// HTML forms come from Document when the result implements Documenter, and
// are built from the table and the JUnit cases otherwise, so every command
// renders in every format.
type Report interface {
	// WriteTable writes the human-readable form.
	WriteTable(w io.Writer) error
	// JUnit returns the result as JUnit test suites.
	JUnit() Suites
}

// Documenter is a Report that lays itself out for reading (Markdown, HTML):
// headings, tables with verdict tones, lists and timelines.
type Documenter interface {
	Document() Document
}

// JSONWriter is implemented by reports that write their JSON themselves,
// because a generic indenting encoder is too slow for their size (a socket
// scan of 100,000 sockets). The document must equal the report's json tags.
type JSONWriter interface {
	WriteJSON(w io.Writer) error
}

// Render writes r to w in format f. JSON is the value itself, marshalled
// with its own field tags, so the JSON contract lives next to the type. The
// table is coloured only when w is a terminal and NO_COLOR is not set.
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
	case Markdown:
		return WriteMarkdown(w, DocumentOf(r))
	case HTML:
		return WriteHTML(w, DocumentOf(r))
	case Table, "":
		if !ColourEnabled(w) {
			return r.WriteTable(w)
		}
		var b bytes.Buffer
		if err := r.WriteTable(&b); err != nil {
			return err
		}
		_, err := io.WriteString(w, Colourize(b.String()))
		return err
	}
	return fmt.Errorf("%w %q", ErrUnknownFormat, f)
}

// DocumentOf returns r's own Document, or one built from its table and its
// JUnit cases when r does not lay itself out.
func DocumentOf(r Report) Document {
	if d, ok := r.(Documenter); ok {
		return d.Document()
	}
	var b strings.Builder
	tableErr := r.WriteTable(&b)
	s := r.JUnit()
	d := Document{Title: s.Name, Status: StatusOK}
	if d.Title == "" && len(s.Suites) > 0 {
		d.Title = s.Suites[0].Name
	}
	if d.Title == "" {
		d.Title = "kadiag"
	}
	if s.Failures+s.Errors > 0 {
		d.Status = StatusFailed
	}
	d.Summary = fmt.Sprintf("%d checks: %d failed, %d errors", s.Tests, s.Failures, s.Errors)
	if tableErr == nil && b.Len() > 0 {
		d.Sections = append(d.Sections, Section{Heading: "Report", Code: b.String()})
	}
	for _, suite := range s.Suites {
		g := &Grid{Header: []string{"check", "result", "detail"}}
		for _, c := range suite.Cases {
			res, tone, detail := "pass", Good, c.SystemOut
			switch {
			case c.Failure != nil:
				res, tone, detail = "FAIL", Bad, c.Failure.Message
			case c.Error != nil:
				res, tone, detail = "ERROR", Bad, c.Error.Message
			case c.Skipped != nil:
				res, tone, detail = "skipped", Warn, c.Skipped.Message
			}
			g.Rows = append(g.Rows, []Cell{{Text: c.Name}, {Text: res, Tone: tone}, {Text: detail}})
		}
		if len(g.Rows) > 0 {
			d.Sections = append(d.Sections, Section{Heading: suite.Name, Grid: g})
		}
	}
	return d
}
