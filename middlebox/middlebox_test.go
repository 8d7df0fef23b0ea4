package middlebox

import (
	"errors"
	"testing"
	"time"
)

func TestParseIdle(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  error
	}{
		{"350s", 350 * time.Second, nil},
		{"350", 350 * time.Second, nil},
		{" 5m ", 5 * time.Minute, nil},
		{"1h30m", 90 * time.Minute, nil},
		{"aws-nat", 350 * time.Second, nil},
		{"azure-lb", 240 * time.Second, nil},
		{"gcp-nat", 1200 * time.Second, nil},
		{"swarm-ipvs", 900 * time.Second, nil},
		{"", 0, ErrBadDuration},
		{"0", 0, ErrBadDuration},
		{"-5s", 0, ErrBadDuration},
		{"abc", 0, ErrBadDuration},
		{"aws-natt", 0, ErrBadDuration},
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

func TestLookupUnknown(t *testing.T) {
	if _, err := Lookup("nope"); !errors.Is(err, ErrUnknownPreset) {
		t.Fatalf("Lookup(nope) error = %v, want ErrUnknownPreset", err)
	}
	for _, p := range Presets() {
		got, err := Lookup(p.Name)
		if err != nil || got != p {
			t.Errorf("Lookup(%q) = %v, %v", p.Name, got, err)
		}
	}
}
