package middlebox

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseDuration: every string gives a non-negative duration that
// survives a round trip through its own String form, or an ErrBadDuration
// naming the input on one line.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"350", "350s", "5m", "1h30m", "-1s", "", " 60 ", "4294967295", "4294967296",
		"9223372036s", "2562047h47m16.854775807s", "2562048h", "1e3", "0x10", "1.5h", "300ms", "+5s", "\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !errors.Is(err, ErrBadDuration) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseDuration(%q): error %q: want one line wrapping ErrBadDuration", s, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, which reads back as %v, %v", s, d, back, err)
		}
	})
}

// FuzzParseIdle: an idle limit is positive, and a preset name always wins.
func FuzzParseIdle(f *testing.F) {
	for _, p := range Presets() {
		f.Add(p.Name)
		f.Add(" " + strings.ToUpper(p.Name))
	}
	for _, s := range []string{"0", "0s", "350", "1ns", "aws", "-", "", "@", "@ ", "@/nonexistent.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseIdle(s)
		if err != nil {
			// An "@file" limit fails as a bad measurement, anything else as a bad duration.
			want := ErrBadDuration
			if strings.HasPrefix(strings.TrimSpace(s), "@") {
				want = ErrBadMeasurement
			}
			if !errors.Is(err, want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseIdle(%q): error %q", s, err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("ParseIdle(%q) = %v: want positive", s, d)
		}
		if p, err := Lookup(strings.TrimSpace(s)); err == nil && p.Idle != d {
			t.Fatalf("ParseIdle(%q) = %v, preset says %v", s, d, p.Idle)
		}
	})
}

// FuzzLookup: known names only, errors list the known ones.
func FuzzLookup(f *testing.F) {
	f.Add("aws-nat")
	f.Add("AWS-NAT")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Lookup(s)
		if err == nil {
			if p.Name != s || p.Idle <= 0 {
				t.Fatalf("Lookup(%q) = %+v", s, p)
			}
			return
		}
		if !errors.Is(err, ErrUnknownPreset) || !strings.Contains(err.Error(), "aws-nat") {
			t.Fatalf("Lookup(%q): %v", s, err)
		}
	})
}

// FuzzParseHop: a hop spec gives a hop with a positive idle and a known
// behaviour, or one line wrapping ErrBadHop; never a panic.
func FuzzParseHop(f *testing.F) {
	for _, s := range []string{"aws-nat", "idle=8s,after=heal", "idle=4s,after=drop,nat=no", "aws-nlb,idle=60s", "", ",", "=", "idle=", "a=b=c", "idle=5s,,", "aws-nat,aws-nlb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHop(s)
		if err != nil {
			if !errors.Is(err, ErrBadHop) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseHop(%q): error %q: want one line wrapping ErrBadHop", s, err)
			}
			return
		}
		if h.Idle <= 0 || (h.After != Reset && h.After != Drop && h.After != Heal) || h.Name == "" {
			t.Fatalf("ParseHop(%q) = %+v", s, h)
		}
	})
}
