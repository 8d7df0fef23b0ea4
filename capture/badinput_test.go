package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pcapRecords returns the byte offset of every record of a little-endian pcap.
func pcapRecords(b []byte) []int64 {
	var out []int64
	for off := 24; off+16 <= len(b); {
		out = append(out, int64(off))
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return out
}

// pcapngBlocks returns the offset and type of every block of a
// little-endian pcapng.
func pcapngBlocks(b []byte) (offs []int64, types []uint32) {
	for off := 0; off+12 <= len(b); {
		offs = append(offs, int64(off))
		types = append(types, binary.LittleEndian.Uint32(b[off:]))
		off += int(binary.LittleEndian.Uint32(b[off+4:]))
	}
	return offs, types
}

func readBytes(b []byte) (*Result, error) {
	return Read(bytes.NewReader(b), "test.pcap", Options{})
}

func wantFormatError(t *testing.T, err error, offset int64, contains string) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
		t.Fatalf("error %v (%T), want a *FormatError", err, err)
	}
	if fe.Offset != offset {
		t.Errorf("error %q: offset %d, want %d", err, fe.Offset, offset)
	}
	if !strings.Contains(err.Error(), contains) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line containing %q", err, contains)
	}
	return fe
}

func TestBadMagic(t *testing.T) {
	tests := []struct {
		name, in, contains string
	}{
		{"empty", "", "empty file"},
		{"short", "\xd4\xc3", "too short"},
		{"text", "GET / HTTP/1.1\r\n\r\n", "unknown magic 0x20544547"},
		{"kuznetzov", "\x34\xcd\xb2\xa1" + strings.Repeat("\x00", 40), "Kuznetzov"},
		{"pcap header cut", "\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "truncated"},
		{"pcapng header cut", "\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c", "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readBytes([]byte(tt.in))
			if res != nil {
				t.Errorf("a report for unreadable input: %+v", res)
			}
			wantFormatError(t, err, 0, tt.contains)
		})
	}
}

func TestTruncatedPcap(t *testing.T) {
	for _, name := range []string{"eth.pcap", "eth.pcap.gz"} {
		t.Run(name, func(t *testing.T) {
			b := fixture(t, "eth.pcap")
			recs := pcapRecords(b)
			last := recs[len(recs)-1]
			for _, cut := range []int64{last + 5, last + 20} { // in the record header, in the packet
				in := b[:cut]
				if strings.HasSuffix(name, ".gz") {
					var z bytes.Buffer
					zw := gzip.NewWriter(&z)
					zw.Write(in)
					zw.Close()
					in = z.Bytes()
				}
				res, err := readBytes(in)
				fe := wantFormatError(t, err, last, "truncated")
				if fe.Compressed != strings.HasSuffix(name, ".gz") || fe.Packets != uint64(len(recs)-1) {
					t.Errorf("cut at %d: compressed %v, packets %d, want %d", cut, fe.Compressed, fe.Packets, len(recs)-1)
				}
				if res == nil || res.Summary.Packets != uint64(len(recs)-1) || len(res.Flows) == 0 || res.ReadError != err.Error() {
					t.Errorf("cut at %d: the report of what was read is missing: %+v", cut, res)
				}
			}
		})
	}
}

func TestTruncatedGzip(t *testing.T) {
	b := fixture(t, "eth.pcap.gz")
	_, err := readBytes(b[:len(b)-30])
	if err == nil || !errors.Is(err, ErrFormat) {
		t.Fatalf("cut gzip: %v", err)
	}
}

func TestBadRecordLength(t *testing.T) {
	b := append([]byte(nil), fixture(t, "eth.pcap")...)
	recs := pcapRecords(b)
	at := recs[10]
	binary.LittleEndian.PutUint32(b[at+8:], 0x7fffffff) // caplen
	res, err := readBytes(b)
	wantFormatError(t, err, at, "capture length exceeds")
	if res == nil || res.Summary.Packets != 10 {
		t.Errorf("report of the 10 packets before: %+v", res)
	}
}

func TestPcapngBlocks(t *testing.T) {
	b := fixture(t, "multi.pcapng")
	offs, types := pcapngBlocks(b)
	want, err := readBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	// The first packet block comes after the section header and interfaces.
	first := 0
	for types[first] != 6 {
		first++
	}

	t.Run("unknown block skipped", func(t *testing.T) {
		// pcapng readers must skip block types they do not know.
		blk := make([]byte, 20)
		binary.LittleEndian.PutUint32(blk[0:], 0x0badf00d)
		binary.LittleEndian.PutUint32(blk[4:], 20)
		copy(blk[8:], "garbage!")
		binary.LittleEndian.PutUint32(blk[16:], 20)
		at := offs[first+3]
		in := append(append(append([]byte(nil), b[:at]...), blk...), b[at:]...)
		got, err := readBytes(in)
		if err != nil {
			t.Fatal(err)
		}
		if got.Summary != want.Summary {
			t.Errorf("summary %+v, want %+v", got.Summary, want.Summary)
		}
	})
	t.Run("garbage block length", func(t *testing.T) {
		in := append([]byte(nil), b...)
		at := offs[first+5]
		binary.LittleEndian.PutUint32(in[at+4:], 7) // not a multiple of 4, below the minimum
		res, err := readBytes(in)
		fe := wantFormatError(t, err, at, "byte offset")
		if fe.Packets != 5 || res == nil || res.Summary.Packets != 5 {
			t.Errorf("packets before the bad block: %d, report %+v", fe.Packets, res)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		at := offs[len(offs)-1]
		res, err := readBytes(b[:at+30])
		fe := wantFormatError(t, err, at, "truncated")
		var before uint64 // enhanced packet blocks before the cut one
		for _, ty := range types[:len(types)-1] {
			if ty == 6 {
				before++
			}
		}
		if res == nil || len(res.Flows) == 0 || res.Summary.Packets != before || fe.Packets != before {
			t.Errorf("packets before the cut block: error says %d, report %+v; want %d", fe.Packets, res, before)
		}
	})
}

// TestSnaplenCut: frames cut inside the TCP header are counted and named,
// as Wireshark skips them too; frames cut in the payload are analysed.
func TestSnaplenCut(t *testing.T) {
	res, err := ReadFile(filepath.Join(fixtureDir, "snap60.pcap"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.TruncatedTCP == 0 || res.Summary.TruncatedTCP != res.Summary.Packets || len(res.Flows) != 0 {
		t.Errorf("snap60: %+v, want every packet counted as truncated TCP and no flows", res.Summary)
	}
	if len(res.Notes) == 0 || !strings.Contains(strings.Join(res.Notes, " "), "snaplen") {
		t.Errorf("snap60: notes %q do not explain the cut packets", res.Notes)
	}
	res, err = ReadFile(filepath.Join(fixtureDir, "snap96.pcap"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.SnaplenCut == 0 || res.Summary.TruncatedTCP != 0 || len(res.Flows) < 7 {
		t.Errorf("snap96: %+v", res.Summary)
	}
}

// TestCorruptNeverPanics flips random bytes of real captures: every
// outcome is a report or an error, never a crash.
func TestCorruptNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, name := range []string{"eth.pcap", "multi.pcapng", "any-sll2.pcap", "qinq.pcap"} {
		b := fixture(t, name)
		for i := 0; i < 300; i++ {
			in := append([]byte(nil), b...)
			for n := 1 + rng.Intn(8); n > 0; n-- {
				in[rng.Intn(len(in))] = byte(rng.Intn(256))
			}
			if rng.Intn(4) == 0 {
				in = in[:rng.Intn(len(in))]
			}
			res, err := readBytes(in)
			if err == nil && res == nil {
				t.Fatalf("%s #%d: neither a report nor an error", name, i)
			}
		}
	}
}
