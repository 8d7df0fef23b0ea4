package capture

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// tsharkMarks runs tshark on file: per frame number, the sequence analysis
// flags it gives the TCP segment in it.
func tsharkMarks(t *testing.T, file string) map[int]wsMarks {
	t.Helper()
	cmd := exec.Command("tshark", "-n", "-r", file, "-Y", "tcp", "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "tcp.analysis.keep_alive", "-e", "tcp.analysis.keep_alive_ack",
		"-e", "tcp.analysis.zero_window_probe")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v: %s", file, err, stderr.String())
	}
	marks := map[int]wsMarks{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 4 {
			t.Fatalf("tshark line %q", line)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("tshark line %q", line)
		}
		marks[n] = wsMarks{keepAlive: f[1] != "", keepAliveAck: f[2] != "", zeroWindowProbe: f[3] != ""}
	}
	return marks
}

// TestWiresharkMarks: on the committed captures, segment by segment, the
// port of Wireshark's sequence analysis gives each segment the keep-alive,
// keep-alive ACK and zero window probe flags tshark gives it.
func TestWiresharkMarks(t *testing.T) {
	testenv.Need(t, "tshark")
	// The captures themselves; the other variants re-encapsulate eth's
	// frames, which changes the decoding, not the sequence analysis.
	distinct := map[string]bool{"eth": true, "eth-nano": true, "any-sll2": true, "kadiag-live": true, "multi": true}
	for _, v := range fixtureVariants() {
		if !distinct[v.name] {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			want := tsharkMarks(t, v.path)
			type state struct{ seq [2]seqState }
			flows := map[flowKey]*state{}
			dec := newDecoder()
			var seg segment
			seen, flagged := 0, 0
			for i, fr := range readFrames(t, v.path) {
				if dec.decode(fr.lt, fr.data, &seg) != isTCP {
					continue
				}
				key, d := flowKey{seg.src, seg.dst}, 0
				if seg.dst.less(seg.src) {
					key, d = flowKey{seg.dst, seg.src}, 1
				}
				st := flows[key]
				if st == nil || seg.flags&(flagSYN|flagACK) == flagSYN {
					// A SYN starts a new tcp.stream (the lab never reuses
					// ports within one capture).
					st = &state{}
					flows[key] = st
				}
				m := wiresharkMarks(&st.seq[d], &st.seq[1-d], &seg)
				m.notAdvanced = false // not among the flags compared
				w, ok := want[i+1]
				if !ok {
					t.Fatalf("frame %d: kadiag decoded TCP, tshark did not", i+1)
				}
				seen++
				if m != (wsMarks{}) {
					flagged++
				}
				if m != w {
					t.Errorf("frame %d: kadiag %+v, tshark %+v", i+1, m, w)
				}
			}
			if seen != len(want) || flagged == 0 {
				t.Errorf("%d TCP segments compared (%d flagged), tshark decoded %d", seen, flagged, len(want))
			}
		})
	}
}
