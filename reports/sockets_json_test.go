package reports

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"testing"

	"github.com/kadiag/kadiag/inspect"
)

// TestSocketsWriteJSON: the streamed JSON that Render writes for a socket
// scan is the same document encoding/json makes of the report, so the
// contract stays the struct's own tags. The scan is of this test process
// holding real sockets: a listener, a connection to it and its peer.
func TestSocketsWriteJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := inspect.ScanPIDs([]int{os.Getpid()}, inspect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Processes) != 1 || len(r.Processes[0].Sockets) < 3 {
		t.Fatalf("scan of own process: %+v, want 1 process with >= 3 sockets", r.Processes)
	}
	empty := *r
	empty.Processes = append([]inspect.Process(nil), r.Processes...)
	empty.Processes[0].Sockets = []inspect.Socket{}
	for _, rep := range []*inspect.Report{r, &empty} {
		var streamed bytes.Buffer
		if err := Render(&streamed, JSON, Sockets{rep}); err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := json.Compact(&got, streamed.Bytes()); err != nil {
			t.Fatalf("streamed JSON does not parse: %v\n%s", err, streamed.String())
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("streamed JSON differs from encoding/json:\n%s\nwant\n%s", got.Bytes(), want)
		}
	}
}
