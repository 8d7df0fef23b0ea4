// Package label holds the one rule by which kadiag turns text it did not
// write (a process's comm, set by any user with prctl(PR_SET_NAME) and cut
// by the kernel at 15 bytes, possibly inside a character; cgroup paths;
// environment values) into text every output format can carry: the table,
// JSON, Markdown, HTML, JUnit and Prometheus labels all show the same
// string for the same process.
package label

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean returns s with every byte that is not part of valid UTF-8 written
// as \xNN and every control character (C0, DEL, C1, which would move a
// terminal's cursor or break a line-based format) written as \xNN or
// \uNNNN. Valid printable text, spaces included, is returned unchanged.
// Clean is idempotent: its output is valid, printable UTF-8, so cleaning
// twice (at the source and again at a renderer) changes nothing.
func Clean(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r < 0x80 && unicode.IsControl(r):
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			b.WriteString(`\u`)
			h := strconv.FormatInt(int64(r), 16)
			b.WriteString(strings.Repeat("0", 4-len(h)) + h)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// clean is the fast path: nearly every comm is short printable ASCII.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}
