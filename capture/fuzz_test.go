package capture_test

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/kadiag/kadiag/capture"
	"github.com/kadiag/kadiag/reports"
)

// fuzzSeeds are the small committed captures: every format and link type
// kadiag reads, so mutations start from files that get deep into the parsers.
var fuzzSeeds = []string{"ipv6.pcap", "eth.pcap.gz", "multi.pcapng.gz", "snap60.pcap", "any-sll2.pcap",
	"qinq.pcap", "kadiag-live.pcapng", "null.pcap", "raw.pcap", "eth-nano.pcap"}

func addFileSeeds(f *testing.F) {
	for _, name := range fuzzSeeds {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "capture", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkResult holds what every report must satisfy, whatever the input: it
// renders in all three formats, its JSON is valid and decodes back into the
// contract's types, and its numbers add up.
func checkResult(t *testing.T, res *capture.Result) {
	t.Helper()
	s := res.Summary
	if s.Flows != len(res.Flows) || s.OK+s.AtRisk != s.Flows {
		t.Fatalf("summary %+v does not add up over %d flows", s, len(res.Flows))
	}
	probes := 0
	for _, fl := range res.Flows {
		probes += fl.Probes
		for _, v := range []float64{fl.MaxGapS, fl.TrailingIdleS, fl.IdleBeforeProbeS} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("flow %s-%s has a bad duration %v: %+v", fl.Client, fl.Server, v, fl)
			}
		}
		if fl.ClientProbes+fl.ServerProbes != fl.Probes || fl.UnansweredProbes < 0 {
			t.Fatalf("flow %s-%s: probe counts do not add up: %+v", fl.Client, fl.Server, fl)
		}
	}
	if probes != s.Probes {
		t.Fatalf("summary says %d probes, flows %d", s.Probes, probes)
	}
	rep := reports.Capture{Result: res}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	// The JSON contract is what scripts decode: it must decode strictly
	// into the result's own types.
	dec := json.NewDecoder(&js)
	for dec.More() {
		var back capture.Result
		if err := dec.Decode(&back); err != nil {
			t.Fatalf("JSON does not decode back: %v", err)
		}
	}
	for _, f := range reports.Formats {
		if err := reports.Render(io.Discard, f, rep); err != nil {
			t.Fatalf("render %s: %v", f, err)
		}
	}
}

// FuzzRead feeds arbitrary bytes to the pcap/pcapng reader and the flow
// analysis behind it: a report or a one-line error naming the file, never a
// panic, never a report that does not render.
func FuzzRead(f *testing.F) {
	addFileSeeds(f)
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := capture.Read(bytes.NewReader(data), "fuzz.pcap", capture.Options{MaxIdle: 5 * time.Second, ProbesEvery: time.Second})
		if err == nil && res == nil {
			t.Fatal("neither a report nor an error")
		}
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "fuzz.pcap") {
				t.Fatalf("error %q: want one line starting with the file name", msg)
			}
			// A recovered panic is a bug in the decoding, not bad input.
			if strings.Contains(msg, "unreadable record (") {
				t.Fatalf("reader panicked: %v", msg)
			}
		}
		if res != nil {
			checkResult(t, res)
		}
	})
}

// FuzzFeed gives the flow analysis single frames of any link type with any
// capture metadata, the way a live AF_PACKET ring hands them over.
func FuzzFeed(f *testing.F) {
	seed := func(name string) {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "capture", name))
		if err != nil {
			f.Fatal(err)
		}
		// The first record of a little-endian pcap, link type and all.
		if len(b) > 40 {
			lt := uint16(b[20]) | uint16(b[21])<<8
			f.Add(lt, b[40:min(len(b), 40+int(b[32]))], int64(1e9), uint16(0))
		}
	}
	for _, n := range []string{"eth.pcap", "any-sll2.pcap", "qinq.pcap", "raw.pcap", "null.pcap", "ipv6.pcap"} {
		seed(n)
	}
	f.Fuzz(func(t *testing.T, lt uint16, frame []byte, ts int64, extra uint16) {
		a := capture.NewAnalyzer(capture.Options{MaxIdle: time.Second})
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(frame), Length: len(frame) + int(extra)}
		// The same frame three times, time running backwards the third
		// time: captures are not always in order.
		a.Feed(layers.LinkType(lt), frame, ci)
		ci.Timestamp = ci.Timestamp.Add(time.Hour)
		a.Feed(layers.LinkType(lt), frame, ci)
		ci.Timestamp = time.Unix(0, ts-int64(time.Hour))
		a.Feed(layers.LinkType(lt), frame, ci)
		checkResult(t, a.Result(time.Unix(0, ts)))
	})
}
