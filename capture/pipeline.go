package capture

import (
	"fmt"
	"io"

	"github.com/gopacket/gopacket/layers"
)

// Reading a file runs in two goroutines: one reads records (and inflates
// gzip) and decodes each frame into a segment, the other runs the flow
// analysis on the segments in capture order. They take about the same time
// per packet, so on two free cores a file is read in about half the time;
// the order, and so the report, is the same as reading in one goroutine.
// Frames travel in batches so the hand-over costs little per packet: each
// hand-over may wake the other goroutine's thread, and at 1,024 frames a
// batch that showed in the CPU time.
const (
	batchFrames = 4096
	batchesLent = 4 // batches in flight: bounds the memory at ~2 MB
)

// decodedFrame is one frame as the decoding goroutine hands it over.
type decodedFrame struct {
	seg decodedSegment
	at  int64 // byte offset of the frame's record, for errors
}

// decodedSegment is what Analyzer.account needs of a frame.
type decodedSegment struct {
	s   segment
	ts  int64
	lt  layers.LinkType
	r   decodeResult
	cut bool
}

// frameBatch is a run of decoded frames. The last batch of a file carries
// why reading stopped: io.EOF at its end, else the error and the offset of
// the record it was found in.
type frameBatch struct {
	frames [batchFrames]decodedFrame
	n      int
	err    error
	errAt  int64
}

// frameSource yields a capture file's frames: the link type, the bytes
// (valid until the next call), the time in ns since the epoch, whether the
// frame was cut by the snap length, and the byte offset of the record after
// it.
type frameSource func() (lt layers.LinkType, data []byte, ts int64, cut bool, next int64, err error)

// decodeFrames reads and decodes every frame of next, starting at byte
// offset start, into batches taken from free and sent on full, until the
// source ends or done is closed. A panic in the decoding ends the reading
// like a bad record.
func decodeFrames(next frameSource, start int64, free <-chan *frameBatch, full chan<- *frameBatch, done <-chan struct{}) {
	dec := newDecoder()
	var b *frameBatch
	at := start
	get := func() bool {
		select {
		case b = <-free:
			b.n, b.err = 0, nil
			return true
		case <-done:
			return false
		}
	}
	send := func() bool {
		select {
		case full <- b:
			return true
		case <-done:
			return false
		}
	}
	defer func() {
		// pcapgo validates what it reads; this is the last line of defence so
		// a hostile file gives an error, never a crash.
		if p := recover(); p != nil {
			b.err, b.errAt = fmt.Errorf("unreadable record (%v)", p), at
			send()
		}
	}()
	if !get() {
		return
	}
	for {
		lt, data, ts, cut, after, err := next()
		if err != nil {
			b.err, b.errAt = err, at
			send()
			return
		}
		f := &b.frames[b.n]
		f.at = at
		f.seg.lt, f.seg.ts, f.seg.cut = lt, ts, cut
		f.seg.r = dec.decode(lt, data, &f.seg.s)
		at = after
		if b.n++; b.n == batchFrames {
			if !send() || !get() {
				return
			}
		}
	}
}

// analyse runs every frame of next through a, decoding in a goroutine of
// its own. It returns nil at the end of the input, else the offset of the
// record where the reading stopped and the error found there. A panic
// in the analysis is passed on once the decoding goroutine has ended, with
// *at holding the offset of the frame being analysed.
func (a *Analyzer) analyse(next frameSource, start int64, at *int64) (errAt int64, err error) {
	free := make(chan *frameBatch, batchesLent)
	full := make(chan *frameBatch, batchesLent)
	done := make(chan struct{})
	ended := make(chan struct{})
	for range batchesLent {
		free <- &frameBatch{}
	}
	go func() {
		defer close(ended)
		decodeFrames(next, start, free, full, done)
	}()
	defer func() {
		close(done)
		<-ended
	}()
	for b := range full {
		for i := range b.frames[:b.n] {
			f := &b.frames[i]
			*at = f.at
			a.account(f.seg.lt, f.seg.ts, f.seg.cut, f.seg.r, &f.seg.s)
		}
		if b.err != nil {
			if b.err == io.EOF {
				return 0, nil
			}
			return b.errAt, b.err
		}
		free <- b
	}
	panic("unreachable: the decoding goroutine ends with an error batch")
}
