package reports

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/capture"
)

// TestCaptureWriteJSON: the streaming JSON (what Render uses) is byte for
// byte what encoding/json writes for the same value, with flows, without,
// and with a read error, so the contract stays the struct's own tags.
func TestCaptureWriteJSON(t *testing.T) {
	res, err := capture.ReadFile("../testdata/capture/eth.pcap", capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	empty := *res
	empty.Flows = []capture.Flow{}
	broken := *res
	broken.ReadError = "x.pcap: file ends <here> at byte offset 5"
	for _, r := range []*capture.Result{res, &empty, &broken} {
		var want, got bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		if err := (Capture{r}).WriteJSON(&got); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("WriteJSON differs from encoding/json:\n%s\nwant\n%s", got.String(), want.String())
		}
	}
}

func TestCaptureTable(t *testing.T) {
	res, err := capture.ReadFile("../testdata/capture/eth.pcap", capture.Options{MaxIdle: 2e9})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := (Capture{res}).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"CLIENT", "VERDICT", "at-risk", "7 flows: 5 ok, 2 at risk (max idle 2s)", "[fd00:6b61:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
