package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapReader reads the records of a classic pcap file in place: each
// record's bytes are a slice of the bufio.Reader's buffer, valid until the
// next call. pcapgo.Reader, which checks the file header, copies every
// packet into its own buffer and builds a time.Time per record; at small
// frames that was a third of the reading time. The checks on each record
// are pcapgo's own (TestPcapReaderMatchesPcapgo holds one against the other).
type pcapReader struct {
	src    *bufio.Reader
	order  binary.ByteOrder
	nsMul  uint32 // 1000 for microsecond timestamps, 1 for nanoseconds
	snap   uint32
	maxCap int // pcapgo's maxCaptureLength
	skip   int // bytes of the record returned last, discarded on the next call
	big    []byte
}

// pcapgo's eagerReadMax: records up to this long are read whatever the
// snap length says.
const pcapEagerMax = 262144

// newPcapReader reads records from src, which is positioned just after the
// file header that pr (reading from src) checked; magic is that header's
// first four bytes, read little-endian. src must buffer at least 4096 bytes,
// else pcapgo wraps it in a buffer of its own that reads ahead.
func newPcapReader(src *bufio.Reader, pr *pcapgo.Reader, magic uint32) *pcapReader {
	r := &pcapReader{src: src, order: binary.LittleEndian, nsMul: 1, snap: pr.Snaplen()}
	if magic == magicPcapMicroBE || magic == magicPcapNanoBE {
		r.order = binary.BigEndian
	}
	if pr.Resolution() == gopacket.TimestampResolutionMicrosecond {
		r.nsMul = 1000
	}
	r.maxCap = pcapEagerMax
	if r.snap > pcapEagerMax {
		r.maxCap = int(r.snap)
	}
	return r
}

// next returns the next record's packet bytes, its time in ns since the
// epoch, and its original length; io.EOF after the last record.
func (r *pcapReader) next() (data []byte, ts int64, length int, err error) {
	if r.skip > 0 {
		r.src.Discard(r.skip)
		r.skip = 0
	}
	hdr, err := r.src.Peek(16)
	if len(hdr) < 16 {
		switch {
		case err != nil && err != io.EOF:
			return nil, 0, 0, err // the gzip layer's, say
		case len(hdr) == 0:
			return nil, 0, 0, io.EOF
		}
		return nil, 0, 0, io.ErrUnexpectedEOF
	}
	// pcapgo multiplies in 32 bits and lets time.Unix carry the overflow
	// into the seconds; so does this.
	ts = int64(r.order.Uint32(hdr[0:4]))*1e9 + int64(r.order.Uint32(hdr[4:8])*r.nsMul)
	capLen := int(r.order.Uint32(hdr[8:12]))
	length = int(r.order.Uint32(hdr[12:16]))
	if capLen > r.maxCap {
		return nil, 0, 0, fmt.Errorf("capture length exceeds snap length: %d > %d", capLen, r.snap)
	}
	if capLen > length {
		return nil, 0, 0, fmt.Errorf("capture length exceeds original packet length: %d > %d", capLen, length)
	}
	if 16+capLen <= r.src.Size() {
		rec, err := r.src.Peek(16 + capLen)
		if len(rec) < 16+capLen {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, 0, err
		}
		r.skip = 16 + capLen
		return rec[16:], ts, length, nil
	}
	// Longer than the buffer (a snap length above 1 MiB): copied, the slice
	// growing with what was read so a lying header cannot make it allocate.
	r.src.Discard(16)
	r.big = r.big[:0]
	for len(r.big) < capLen {
		chunk := min(capLen-len(r.big), r.src.Size())
		p, err := r.src.Peek(chunk)
		r.big = append(r.big, p...)
		r.src.Discard(len(p))
		if len(p) < chunk {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, 0, err
		}
	}
	return r.big, ts, length, nil
}
