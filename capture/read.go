package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ErrFormat is returned (wrapped in a *FormatError) for input that is not a
// readable pcap or pcapng capture.
var ErrFormat = errors.New("bad capture file")

// FormatError is a capture file that could not be read to its end: the
// problem and the byte offset where it was found.
type FormatError struct {
	Name string
	// Offset is the byte offset of the record that could not be read; in a
	// gzip-compressed file it counts decompressed bytes.
	Offset     int64
	Compressed bool
	// Packets is how many packets were read before the problem.
	Packets uint64
	Err     error
}

// Error names the file, the problem and the byte offset in one line.
func (e *FormatError) Error() string {
	where := fmt.Sprintf("at byte offset %d", e.Offset)
	if e.Compressed {
		where += " of the decompressed data"
	}
	msg := fmt.Sprintf("%s: %v %s", e.Name, e.Err, where)
	if e.Packets > 0 {
		msg += fmt.Sprintf(" (after %d packets; the report covers them)", e.Packets)
	}
	return msg
}

// Unwrap makes errors.Is match both ErrFormat and the underlying cause
// (such as io.ErrUnexpectedEOF).
func (e *FormatError) Unwrap() []error { return []error{ErrFormat, e.Err} }

// Capture file magic numbers, as the first four bytes read little-endian.
const (
	magicPcapMicro   = 0xa1b2c3d4
	magicPcapNano    = 0xa1b23c4d
	magicPcapMicroBE = 0xd4c3b2a1
	magicPcapNanoBE  = 0x4d3cb2a1
	magicPcapng      = 0x0a0d0d0a
	magicPcapKuznet  = 0xa1b2cd34
)

// ReadFile analyses a pcap or pcapng file, gzip-compressed or not.
func ReadFile(path string, opts Options) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	return Read(f, path, opts)
}

// countingReader counts the bytes its reader has delivered.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// packetSource is what pcapgo's two readers have in common.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Read analyses a capture streamed from r; name is used in errors. When the
// input breaks off after some packets, Read returns the report of what was
// read (with ReadError set) together with a *FormatError.
func Read(r io.Reader, name string, opts Options) (res *Result, err error) {
	raw := bufio.NewReaderSize(r, 64<<10)
	counter := &countingReader{r: raw}
	compressed := false
	if m, _ := raw.Peek(2); len(m) == 2 && m[0] == 0x1f && m[1] == 0x8b {
		gz, err := gzip.NewReader(raw)
		if err != nil {
			return nil, &FormatError{Name: name, Err: fmt.Errorf("gzip: %w", err)}
		}
		counter.r = gz
		compressed = true
	}
	// pcapgo wraps its input in bufio.NewReader, which hands back a
	// *bufio.Reader that is large enough: so this buffer is the only one
	// above the counter, and the offset consumed is exact. Records are
	// decoded where they were read into it; at 128 KiB it is still in the
	// core's cache then (1 MiB cost a tenth more CPU time on small frames).
	src := bufio.NewReaderSize(counter, 128<<10)
	offset := func() int64 { return counter.n - int64(src.Buffered()) }
	fail := func(off int64, packets uint64, e error) *FormatError {
		return &FormatError{Name: name, Offset: off, Compressed: compressed, Packets: packets, Err: e}
	}

	head, perr := src.Peek(4)
	if len(head) == 0 {
		if perr == nil || perr == io.EOF {
			return nil, fail(0, 0, errors.New("empty file, not a pcap or pcapng capture"))
		}
		return nil, fail(0, 0, perr)
	}
	if len(head) < 4 {
		return nil, fail(0, 0, fmt.Errorf("only %d bytes, too short for a pcap or pcapng header", len(head)))
	}
	var (
		source  packetSource
		records *pcapReader
		pcapLT  layers.LinkType
	)
	switch magic := binary.LittleEndian.Uint32(head); magic {
	case magicPcapMicro, magicPcapNano, magicPcapMicroBE, magicPcapNanoBE:
		// pcapgo checks the file header; the records are read in place.
		pr, err := pcapgo.NewReader(src)
		if err != nil {
			return nil, fail(0, 0, fmt.Errorf("pcap header: %w", readErr(err)))
		}
		records, pcapLT = newPcapReader(src, pr, magic), pr.LinkType()
	case magicPcapng:
		nr, err := pcapgo.NewNgReader(src, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fail(0, 0, fmt.Errorf("pcapng section header: %w", readErr(err)))
		}
		source = nr
	case magicPcapKuznet:
		return nil, fail(0, 0, errors.New("modified (Kuznetzov) pcap format is not supported: convert it with 'editcap -F pcap IN OUT'"))
	default:
		return nil, fail(0, 0, fmt.Errorf("unknown magic 0x%08x: not a pcap or pcapng capture (write one with tcpdump -w or kadiag capture --write)", magic))
	}

	var next frameSource
	if records != nil {
		at := offset()
		next = func() (layers.LinkType, []byte, int64, bool, int64, error) {
			data, ts, length, err := records.next()
			at += int64(16 + len(data))
			return pcapLT, data, ts, len(data) < length, at, err
		}
	} else {
		next = func() (layers.LinkType, []byte, int64, bool, int64, error) {
			data, ci, err := source.ZeroCopyReadPacketData()
			lt := pcapLT
			if len(ci.AncillaryData) > 0 {
				if t, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					lt = t
				}
			}
			return lt, data, ci.Timestamp.UnixNano(), ci.CaptureLength < ci.Length, offset(), err
		}
	}

	a := NewAnalyzer(opts)
	var analysing int64 // offset of the record being analysed
	defer func() {
		// The analysis's own last line of defence (the decoding has one too).
		if p := recover(); p != nil {
			res = a.result(time.Time{}, true)
			res.Source = name
			ferr := fail(analysing, a.stats.Packets, fmt.Errorf("unreadable record (%v)", p))
			res.ReadError = ferr.Error()
			err = ferr
		}
	}()
	if at, rerr := a.analyse(next, offset(), &analysing); rerr != nil {
		res = a.result(time.Time{}, true)
		res.Source = name
		ferr := fail(at, a.stats.Packets, readErr(rerr))
		res.ReadError = ferr.Error()
		return res, ferr
	}
	res = a.result(time.Time{}, true)
	res.Source = name
	collectFlows(res)
	return res, nil
}

// collectFlows runs the garbage collector once the flows of a large capture
// have turned into its report. The collector paces itself by the heap it
// found live at its last cycle; when that cycle fell while the flows and
// the report were both live, rendering the report could grow the heap to
// twice their size (peak RSS of the 1 GB benchmark file swung between 45
// and 58 MB with where the cycle fell). Collected here, the heap starts
// the rendering at the report's size. Below a thousand flows the heap is
// small whatever the pacing.
func collectFlows(res *Result) {
	if len(res.Flows) >= 1000 {
		runtime.GC()
	}
}

// readErr words pcapgo's errors for people.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("file ends in the middle of a record (truncated capture?): %w", io.ErrUnexpectedEOF)
	}
	return err
}
