package middlebox

import (
	"errors"
	"testing"
	"time"
)

func TestParseIdleMeasured(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  error
	}{
		{"@testdata/path/measured.json", 350200 * time.Millisecond, nil},
		{" @testdata/path/measured.json", 350200 * time.Millisecond, nil},
		{"@testdata/path/none.json", 0, ErrBadMeasurement},
		{"@testdata/path/other.json", 0, ErrBadMeasurement},
		{"@testdata/path/missing.json", 0, ErrBadMeasurement},
		{"@", 0, ErrBadMeasurement},
	}
	for _, tt := range tests {
		got, err := ParseIdle(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("ParseIdle(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseIdle(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
