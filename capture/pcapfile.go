package capture

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/bits"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapReader reads the records of a classic pcap file in place: each
// record's bytes are a slice of the bufio.Reader's buffer, valid until the
// next call. pcapgo.Reader, which checks the file header, copies every
// packet into its own buffer and builds a time.Time per record; at small
// frames that was a third of the reading time. The checks on each record
// are pcapgo's own, and pcapgo reads the records that fail them, or that
// are longer than the buffer (TestPcapReaderMatchesPcapgo holds one reader
// against the other).
type pcapReader struct {
	src    *bufio.Reader
	swap   bool   // the file is big-endian
	nsMul  uint32 // 1000 for microsecond timestamps, 1 for nanoseconds
	maxCap int    // pcapgo's maxCaptureLength
	pr     *pcapgo.Reader
	// win is what src holds buffered; pos bytes of it are read but not yet
	// discarded from src. Records are cut from win until it runs short.
	win []byte
	pos int
}

// pcapgo's eagerReadMax: records up to this long are read whatever the
// snap length says.
const pcapEagerMax = 262144

// newPcapReader reads records from src, which is positioned just after the
// file header that pr (reading from src) checked; magic is that header's
// first four bytes, read little-endian. src must buffer at least 4096 bytes,
// else pcapgo wraps it in a buffer of its own that reads ahead.
func newPcapReader(src *bufio.Reader, pr *pcapgo.Reader, magic uint32) *pcapReader {
	r := &pcapReader{src: src, pr: pr, nsMul: 1}
	r.swap = magic == magicPcapMicroBE || magic == magicPcapNanoBE
	if pr.Resolution() == gopacket.TimestampResolutionMicrosecond {
		r.nsMul = 1000
	}
	r.maxCap = pcapEagerMax
	if snap := pr.Snaplen(); snap > pcapEagerMax {
		r.maxCap = int(snap)
	}
	return r
}

func (r *pcapReader) u32(b []byte) uint32 {
	v := binary.LittleEndian.Uint32(b)
	if r.swap {
		v = bits.ReverseBytes32(v)
	}
	return v
}

// refill makes win hold at least n bytes past pos (n at most src.Size()),
// reading from the file as needed; short is the error when it ends first
// with some bytes, and io.EOF when it ends with none.
func (r *pcapReader) refill(n int, short error) error {
	r.src.Discard(r.pos)
	r.pos = 0
	_, err := r.src.Peek(n)
	r.win, _ = r.src.Peek(r.src.Buffered())
	if len(r.win) >= n {
		return nil
	}
	switch {
	case err != nil && err != io.EOF:
		return err // the gzip layer's, say
	case len(r.win) == 0 && short == nil:
		return io.EOF
	case short == nil:
		return io.ErrUnexpectedEOF
	}
	return short
}

// next returns the next record's packet bytes, its time in ns since the
// epoch, and its original length; io.EOF after the last record. pcapgo's
// checks of a record come first, so a record either passes them or is read
// by pcapgo.
func (r *pcapReader) next() (data []byte, ts int64, length int, err error) {
	if len(r.win)-r.pos < 16 {
		if err := r.refill(16, nil); err != nil {
			return nil, 0, 0, err
		}
	}
	hdr := r.win[r.pos : r.pos+16]
	// pcapgo multiplies in 32 bits and lets time.Unix carry the overflow
	// into the seconds; so does this.
	ts = int64(r.u32(hdr[0:4]))*1e9 + int64(r.u32(hdr[4:8])*r.nsMul)
	capLen := int(r.u32(hdr[8:12]))
	length = int(r.u32(hdr[12:16]))
	if capLen > r.maxCap || capLen > length {
		return r.byPcapgo() // an error, in pcapgo's words
	}
	need := 16 + capLen
	if len(r.win)-r.pos >= need {
		data = r.win[r.pos+16 : r.pos+need]
		r.pos += need
		return data, ts, length, nil
	}
	if need <= r.src.Size() {
		if err := r.refill(need, io.ErrUnexpectedEOF); err != nil {
			return nil, 0, 0, err
		}
		data = r.win[16:need]
		r.pos = need
		return data, ts, length, nil
	}
	return r.byPcapgo() // longer than the buffer: a snap length above 1 MiB
}

// byPcapgo hands the record at pos to pcapgo's reader, which reads from
// the same buffer: for records longer than the buffer, and for those its
// checks reject, so that its errors are the ones users saw before.
func (r *pcapReader) byPcapgo() (data []byte, ts int64, length int, err error) {
	r.src.Discard(r.pos)
	r.win, r.pos = nil, 0
	data, ci, err := r.pr.ZeroCopyReadPacketData()
	if err == io.EOF {
		// The record's header was there: its packet is missing (pcapgo
		// takes that for the file's clean end).
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, 0, 0, err
	}
	return data, ci.Timestamp.UnixNano(), ci.Length, nil
}
