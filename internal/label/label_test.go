package label

import (
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"python3", "python3"},
		{"java main", "java main"},
		{"", ""},
		{"café", "café"},
		{"数据库服务", "数据库服务"},
		// The kernel's 15-byte cut inside a 3-byte character.
		{"abcdefghijkl\xe6\x95", `abcdefghijkl\xe6\x95`},
		{"\xff\xfe", `\xff\xfe`},
		{"evil\nline", `evil\x0aline`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"tab\there", `tab\x09here`},
		{"del\x7f", `del\x7f`},
		{"c1\u0085x", `c1\u0085x`},
		{"ls\u2028", `ls\u2028`},
		{`back\slash`, `back\slash`},
	}
	for _, tt := range tests {
		got := Clean(tt.in)
		if got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if Clean(got) != got {
			t.Errorf("Clean not idempotent on %q", got)
		}
	}
}

// FuzzClean: whatever bytes come in, the result is valid UTF-8 without
// control characters, and cleaning it again changes nothing.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"python3", "\xff", "a\nb", "\u0085", "数据"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Clean(s)
		if !utf8.ValidString(c) {
			t.Fatalf("Clean(%q) = %q: invalid UTF-8", s, c)
		}
		for _, r := range c {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("Clean(%q) = %q: control character %U", s, c, r)
			}
		}
		if Clean(c) != c {
			t.Fatalf("Clean not idempotent: %q -> %q", c, Clean(c))
		}
		if utf8.ValidString(s) && clean(s) && c != s {
			t.Fatalf("printable ASCII %q changed to %q", s, c)
		}
	})
}
