package reports

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0ms"},
		{1500 * time.Millisecond, "1.5s"},
		{60 * time.Second, "60s"},
		{350 * time.Second, "350s"},
		{7200 * time.Second, "2h"},
		{7875 * time.Second, "7875s"},
		{90 * time.Minute, "1h30m"},
		{20 * time.Minute, "20m"},
	}
	for _, tt := range tests {
		if got := HumanDuration(tt.in); got != tt.want {
			t.Errorf("HumanDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range Formats {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %q, %v", f, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(yaml) error = %v", err)
	}
}

func TestJUnitTotals(t *testing.T) {
	var s Suites
	s.Add(Suite{Name: "a", Cases: []Case{{Name: "1"}, {Name: "2", Failure: &Failure{Message: "x"}}}})
	s.Add(Suite{Name: "b", Cases: []Case{{Name: "3", Skipped: &Skipped{}}}})
	var b strings.Builder
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	var back Suites
	if err := xml.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b.String())
	}
	if back.Tests != 3 || back.Failures != 1 || back.Suites[1].Skipped != 1 {
		t.Errorf("totals = %+v", back)
	}
}
