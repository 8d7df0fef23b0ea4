package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Conversions of a real Ethernet capture into the other encapsulations
// kadiag reads. The packets stay the ones the kernel sent; only their
// link-layer framing changes, the way other capture points would show them.

type frame struct {
	ci   gopacket.CaptureInfo
	data []byte
	lt   layers.LinkType
}

func readFrames(t testing.TB, path string) []frame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []frame
	head := make([]byte, 4)
	io.ReadFull(f, head)
	f.Seek(0, 0)
	var r interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var link func(gopacket.CaptureInfo) layers.LinkType
	if binary.LittleEndian.Uint32(head) == magicPcapng {
		ng, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatal(err)
		}
		r, link = ng, func(ci gopacket.CaptureInfo) layers.LinkType { return ci.AncillaryData[0].(layers.LinkType) }
	} else {
		pr, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r, link = pr, func(gopacket.CaptureInfo) layers.LinkType { return pr.LinkType() }
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, frame{ci, data, link(ci)})
	}
}

// writePcap writes frames as a pcap of one link type; nano picks
// nanosecond timestamps.
func writePcap(t testing.TB, path string, lt layers.LinkType, nano bool, frames []frame) {
	t.Helper()
	var buf bytes.Buffer
	var w *pcapgo.Writer
	if nano {
		w = pcapgo.NewWriterNanos(&buf)
	} else {
		w = pcapgo.NewWriter(&buf)
	}
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WritePacket(f.ci, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mapFrames applies conv to every frame; conv returns nil to drop one.
func mapFrames(frames []frame, conv func(data []byte) []byte) []frame {
	var out []frame
	for _, f := range frames {
		d := conv(f.data)
		if d == nil {
			continue
		}
		ci := f.ci
		ci.Length += len(d) - len(f.data)
		ci.CaptureLength = len(d)
		out = append(out, frame{ci, d, f.lt})
	}
	return out
}

// ipOf strips an Ethernet header (and any VLAN tags) from a frame.
func ipOf(eth []byte) []byte {
	off := 12
	for off+2 <= len(eth) {
		et := binary.BigEndian.Uint16(eth[off:])
		if et == 0x8100 || et == 0x88a8 {
			off += 4
			continue
		}
		if et != 0x0800 && et != 0x86dd {
			return nil
		}
		return append([]byte(nil), eth[off+2:]...)
	}
	return nil
}

func version(ip []byte) int {
	if len(ip) == 0 {
		return 0
	}
	return int(ip[0] >> 4)
}

// nullHeader prefixes the BSD loopback header: the address family in the
// writer's byte order (DLT_NULL, host order) or big-endian (DLT_LOOP).
func nullHeader(bigEndian bool) func([]byte) []byte {
	return func(eth []byte) []byte {
		ip := ipOf(eth)
		if ip == nil {
			return nil
		}
		fam := uint32(2)
		if version(ip) == 6 {
			fam = 24 // BSD's AF_INET6 value most readers accept (NetBSD/OpenBSD)
		}
		h := make([]byte, 4)
		if bigEndian {
			binary.BigEndian.PutUint32(h, fam)
		} else {
			binary.LittleEndian.PutUint32(h, fam)
		}
		return append(h, ip...)
	}
}

// tag inserts 802.1Q tags (outer first) after the MAC addresses; with two
// tags the outer one is an 802.1ad S-tag (QinQ).
func tag(vids ...uint16) func([]byte) []byte {
	return func(eth []byte) []byte {
		out := append([]byte(nil), eth[:12]...)
		for i, v := range vids {
			tpid := uint16(0x8100)
			if len(vids) > 1 && i == 0 {
				tpid = 0x88a8
			}
			out = binary.BigEndian.AppendUint16(out, tpid)
			out = binary.BigEndian.AppendUint16(out, v)
		}
		return append(out, eth[12:]...)
	}
}

// writeNg writes frames of several link types as one pcapng, one interface
// per link type, in timestamp order.
func writeNg(t testing.TB, path string, frames []frame) {
	t.Helper()
	sort.SliceStable(frames, func(i, j int) bool { return frames[i].ci.Timestamp.Before(frames[j].ci.Timestamp) })
	var buf bytes.Buffer
	ids := map[layers.LinkType]int{}
	var w *pcapgo.NgWriter
	for _, f := range frames {
		id, ok := ids[f.lt]
		if !ok {
			intf := pcapgo.NgInterface{Name: f.lt.String(), LinkType: f.lt, SnapLength: 65535, TimestampResolution: 9}
			var err error
			if w == nil {
				w, err = pcapgo.NewNgWriterInterface(&buf, intf, pcapgo.DefaultNgWriterOptions)
			} else {
				id, err = w.AddInterface(intf)
			}
			if err != nil {
				t.Fatal(err)
			}
			ids[f.lt] = id
		}
		ci := f.ci
		ci.InterfaceIndex = id
		ci.AncillaryData = nil
		if err := w.WritePacket(ci, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gzipFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var _ = time.Second
