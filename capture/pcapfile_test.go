package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// samePcapRecords reads b with pcapgo's reader and with pcapReader over a
// bufio.Reader of bufSize bytes and fails unless both give the same records
// (bytes, time, original length) and stop at the same record. One difference
// is allowed: a record whose header is complete but whose packet is missing
// entirely ends pcapgo's reading with io.EOF, as if the file ended cleanly;
// pcapReader calls it truncated.
func samePcapRecords(t *testing.T, b []byte, bufSize int) {
	t.Helper()
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return // pcapgo would decompress; Read does that before either
	}
	ref, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		return // the file header is pcapgo's to judge in both paths
	}
	src := bufio.NewReaderSize(bytes.NewReader(b), bufSize)
	pr, err := pcapgo.NewReader(src)
	if err != nil {
		t.Fatalf("pcapgo reads the header from bytes but not from a bufio.Reader: %v", err)
	}
	r := newPcapReader(src, pr, binary.LittleEndian.Uint32(b))
	for i := 0; ; i++ {
		want, ci, werr := ref.ZeroCopyReadPacketData()
		got, ts, length, gerr := r.next()
		if werr != nil || gerr != nil {
			switch {
			case werr == io.EOF && gerr == io.EOF:
			case werr == io.EOF && errors.Is(gerr, io.ErrUnexpectedEOF) && ci.CaptureLength > 0:
			case werr != nil && werr != io.EOF && gerr != nil && gerr != io.EOF:
			default:
				t.Fatalf("record %d: pcapgo says %v, pcapReader %v", i, werr, gerr)
			}
			return
		}
		if !bytes.Equal(got, want) || ts != ci.Timestamp.UnixNano() || length != ci.Length {
			t.Fatalf("record %d: pcapReader read %d bytes at %d of %d, pcapgo %d bytes at %d of %d",
				i, len(got), ts, length, len(want), ci.Timestamp.UnixNano(), ci.Length)
		}
	}
}

// bigEndianPcap rewrites a little-endian pcap in the other byte order.
func bigEndianPcap(b []byte) []byte {
	out := append([]byte(nil), b...)
	be, le := binary.BigEndian, binary.LittleEndian
	for _, off := range []int{0, 8, 12, 16, 20} {
		be.PutUint32(out[off:], le.Uint32(b[off:]))
	}
	be.PutUint16(out[4:], le.Uint16(b[4:]))
	be.PutUint16(out[6:], le.Uint16(b[6:]))
	for _, off := range pcapRecords(b) {
		for i := int64(0); i < 16; i += 4 {
			be.PutUint32(out[off+i:], le.Uint32(b[off+i:]))
		}
	}
	return out
}

// jumboPcap rewrites pcap b with each packet padded to 9000 to 40000 bytes
// (a snap length of 262144), as a capture on a jumbo-frame or TSO device
// holds.
func jumboPcap(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := pcapgo.NewWriterNanos(&out)
	if err := w.WriteFileHeader(262144, r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		data = append(data, make([]byte, 9000+i*1000%31000)...)
		ci.CaptureLength, ci.Length = len(data), len(data)
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func TestPcapReaderMatchesPcapgo(t *testing.T) {
	for _, name := range []string{"eth.pcap", "eth-nano.pcap", "ipv4.pcap", "ipv6.pcap", "any-sll2.pcap",
		"loop.pcap", "null.pcap", "qinq.pcap", "raw.pcap", "snap60.pcap", "snap96.pcap", "vlan.pcap"} {
		b := fixture(t, name)
		recs := pcapRecords(b)
		variants := map[string][]byte{"whole": b, "big-endian": bigEndianPcap(b), "jumbo": jumboPcap(t, b)}
		// Cut in a record header, after one, in a packet.
		last := recs[len(recs)-1]
		for _, cut := range []int64{last + 5, last + 16, last + 20} {
			variants[fmt.Sprintf("cut at +%d", cut-last)] = b[:cut]
		}
		lying := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(lying[recs[len(recs)/2]+8:], 0x7fffffff)
		variants["caplen beyond the snap length"] = lying
		longer := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(longer[recs[0]+12:], 1)
		variants["caplen beyond the length"] = longer
		for vname, v := range variants {
			// 1 MiB as Read uses; 4096 bytes (the least pcapgo reads its
			// header through without a buffer of its own) so that the jumbo
			// records are longer than the buffer.
			for _, size := range []int{1 << 20, 4096} {
				t.Run(fmt.Sprintf("%s/%s/%d", name, vname, size), func(t *testing.T) { samePcapRecords(t, v, size) })
			}
		}
	}
}

// FuzzPcapReader holds pcapReader against pcapgo's reader on any bytes.
func FuzzPcapReader(f *testing.F) {
	for _, name := range []string{"eth.pcap", "eth-nano.pcap", "snap60.pcap", "raw.pcap"} {
		b, err := os.ReadFile(filepath.Join(fixtureDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		samePcapRecords(t, b, 64<<10)
		samePcapRecords(t, b, 4096)
	})
}

// TestReadAllocsPerPacket: reading a file allocates nothing per packet, in
// the reader, the decoding or the analysis: a capture with 45,000 packets
// more (repeats of one ACK of a known flow) allocates about as often.
func TestReadAllocsPerPacket(t *testing.T) {
	b := fixture(t, "eth.pcap")
	recs := pcapRecords(b)
	last := b[recs[len(recs)-1]:]
	withRepeats := func(n int) []byte {
		out := append([]byte(nil), b...)
		for range n {
			out = append(out, last...)
		}
		return out
	}
	allocs := func(in []byte) float64 {
		return testing.AllocsPerRun(5, func() {
			if _, err := readBytes(in); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A batch of frames handed between the goroutines may now and then
	// miss its pool (the race detector's scheduling makes that vary), so
	// a few allocations more are no per-packet cost; one per thousand
	// packets would be.
	few, many := allocs(withRepeats(5000)), allocs(withRepeats(50000))
	if many-few >= 45 {
		t.Errorf("reading 50,000 more packets allocates %v times, 5,000 more %v times: allocations per packet", many, few)
	}
}
