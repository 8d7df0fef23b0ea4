package reports

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A comm that is not valid UTF-8 and holds a control character shows as
// the same cleaned text (internal/label's rule, which the exporter's
// labels use too) in every format.
func TestHostileCommEveryFormat(t *testing.T) {
	const raw, clean = "ab\xe6\x95\n\x1b[2Jx", `ab\xe6\x95\x0a\x1b[2Jx`
	r := socketsFixture()
	r.Processes[0].Comm = raw
	for _, f := range Formats {
		var buf bytes.Buffer
		if err := Render(&buf, f, Sockets{r}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out := buf.String()
		if f == JSON {
			var doc struct {
				Processes []struct{ Comm string } `json:"processes"`
			}
			if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
				t.Fatalf("json: %v", err)
			}
			out = doc.Processes[0].Comm
		}
		if f == Markdown {
			// Markdown source escapes the backslash; the rendered text is the same.
			out = strings.ReplaceAll(out, `\\`, `\`)
		}
		if !strings.Contains(out, clean) {
			t.Errorf("%s: cleaned comm %q missing:\n%s", f, clean, out)
		}
		if strings.Contains(out, "\x1b[2J") || strings.Contains(out, "\xe6\x95") {
			t.Errorf("%s: raw bytes of the comm reached the output", f)
		}
	}
}
