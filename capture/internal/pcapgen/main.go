// Command pcapgen writes synthetic pcaps for kadiag's capture benchmark, in
// timestamp order with flows overlapping in time, as a real capture is.
//
// -shape large (the default): many TCP flows, each a handshake, a request, a
// response of full-size segments, then keepalive probes a minute apart
// (answered, or for one flow in ten lost), then a close, until the file holds
// -size MB.
//
// -shape small: -packets small frames (60–250 bytes) over -flows flows open
// at once, Linux-like (timestamp options): each a handshake, request /
// response rounds with ACKs, then keepalive probes a second apart and their
// ACKs (one flow in ten unanswered), then a close.
//
//	go run ./capture/internal/pcapgen -o /tmp/bench.pcap -size 1100
//	go run ./capture/internal/pcapgen -shape small -packets 1000000 -flows 2000 -o /tmp/small.pcap
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

const (
	batch     = 1000 // flows open at once
	segments  = 40   // response segments of 1400 bytes per flow
	probes    = 10   // keepalive probes per flow
	mss       = 1400
	serverIP  = 0xc612c801 // 198.18.200.1
	clientNet = 0xc6120000 // 198.18.0.0/16
)

type pkt struct {
	src, dst     uint32
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	payload      int
	// opts are the TCP options: timestamps on every segment, MSS, SACK
	// permitted and window scale too on SYNs (Linux's choice); none in the
	// large shape.
	opts []byte
}

func main() {
	out := flag.String("o", "/tmp/kadiag-bench.pcap", "output file")
	sizeMB := flag.Int64("size", 1100, "large: stop once the file holds this many MB")
	shape := flag.String("shape", "large", "large (full-size data segments) or small (60-250 byte frames)")
	nPackets := flag.Int("packets", 1000000, "small: about this many packets")
	nFlows := flag.Int("flows", 2000, "small: this many flows")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	var written, packets, flows int64
	buf := make([]byte, 14+20+20+mss)
	emit := func(ts time.Time, p pkt) {
		n := frame(buf, p)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}, buf[:n])
		written += 16 + int64(n)
		packets++
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	switch *shape {
	case "large":
	case "small":
		flows = int64(*nFlows)
		small(start, *nPackets, *nFlows, func(ts time.Time, p pkt) {
			n := frame(buf, p)
			w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}, buf[:n])
			written += 16 + int64(n)
			packets++
		})
		*sizeMB = 0
	default:
		fmt.Fprintf(os.Stderr, "unknown -shape %q (use large or small)\n", *shape)
		os.Exit(2)
	}
	for b := 0; written < *sizeMB<<20; b++ {
		base := start.Add(time.Duration(b) * 20 * time.Minute)
		type state struct{ c, s pkt }
		st := make([]state, batch)
		for i := range st {
			id := b*batch + i
			c := pkt{src: clientNet + uint32(id%60000) + 1, dst: serverIP, sport: uint16(10000 + id%50000), dport: 443, seq: uint32(id) * 7919, window: 502}
			s := pkt{src: serverIP, dst: c.src, sport: 443, dport: c.sport, seq: uint32(id) * 104729, window: 509}
			st[i] = state{c, s}
		}
		at := func(step int, i int, sub int) time.Time {
			return base.Add(time.Duration(step)*time.Minute + time.Duration(i)*time.Millisecond + time.Duration(sub)*50*time.Microsecond)
		}
		// step 0: handshake, request, response, all acknowledged.
		for i := range st {
			c, s := &st[i].c, &st[i].s
			emit(at(0, i, 0), with(*c, flagsSYN, 0, 0))
			c.seq++
			emit(at(0, i, 1), with(*s, flagsSYN|flagsACK, c.seq, 0))
			s.seq++
			emit(at(0, i, 2), with(*c, flagsACK, s.seq, 0))
			emit(at(0, i, 3), with(*c, flagsACK|flagsPSH, s.seq, 300))
			c.seq += 300
			for k := 0; k < segments; k++ {
				emit(at(0, i, 4+k), with(*s, flagsACK, c.seq, mss))
				s.seq += mss
				if k%2 == 1 || k == segments-1 {
					emit(at(0, i, 4+k), with(*c, flagsACK, s.seq, 0))
				}
			}
		}
		// steps 1..probes: the client's keepalive probe (seq - 1) and the
		// server's ACK, a minute apart; every tenth flow's ACKs are lost.
		for p := 1; p <= probes; p++ {
			for i := range st {
				c, s := &st[i].c, &st[i].s
				probe := with(*c, flagsACK, s.seq, 0)
				probe.seq--
				emit(at(p, i, 0), probe)
				if i%10 != 0 {
					emit(at(p, i, 1), with(*s, flagsACK, c.seq, 0))
				}
			}
		}
		for i := range st {
			c, s := &st[i].c, &st[i].s
			emit(at(probes+1, i, 0), with(*c, flagsFIN|flagsACK, s.seq, 0))
			c.seq++
			emit(at(probes+1, i, 1), with(*s, flagsFIN|flagsACK, c.seq, 0))
			s.seq++
			emit(at(probes+1, i, 2), with(*c, flagsACK, s.seq, 0))
		}
		flows += batch
	}
	if err := bw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f.Close()
	fmt.Printf("%s: %d MB, %d packets, %d flows\n", *out, written>>20, packets, flows)
}

const (
	flagsFIN = 0x01
	flagsSYN = 0x02
	flagsPSH = 0x08
	flagsACK = 0x10
)

func with(p pkt, flags uint8, ack uint32, payload int) pkt {
	p.flags, p.ack, p.payload = flags, ack, payload
	return p
}

// frame writes Ethernet + IPv4 + TCP (checksums left zero: readers do not
// verify them by default).
func frame(b []byte, p pkt) int {
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	total := 20 + 20 + p.payload
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint32(ip[4:], 0x40000000) // id 0, DF
	ip[8], ip[9] = 64, 6
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint32(ip[12:], p.src)
	binary.BigEndian.PutUint32(ip[16:], p.dst)
	total += len(p.opts)
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], p.sport)
	binary.BigEndian.PutUint16(tcp[2:], p.dport)
	binary.BigEndian.PutUint32(tcp[4:], p.seq)
	binary.BigEndian.PutUint32(tcp[8:], p.ack)
	tcp[12], tcp[13] = byte(5+len(p.opts)/4)<<4, p.flags
	binary.BigEndian.PutUint16(tcp[14:], p.window)
	binary.BigEndian.PutUint32(tcp[16:], 0)
	copy(tcp[20:], p.opts)
	clear(tcp[20+len(p.opts) : 20+len(p.opts)+p.payload])
	return 14 + total
}

// Linux's TCP options: on a SYN MSS 1460, SACK permitted, timestamps,
// window scale 7; on every other segment NOP, NOP, timestamps.
var (
	synOpts = []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
	tsOpts  = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 1}
)

// small emits about packets frames of 66 to 250 bytes over flows flows that
// run side by side: per flow a handshake, data rounds (a request, the
// response with its ACK, the client's ACK), keepalive rounds a second apart
// (a probe one below the next sequence number and the server's ACK; every
// tenth flow's probes go unanswered), then FIN, FIN, ACK.
func small(start time.Time, packets, flows int, emit func(time.Time, pkt)) {
	perFlow := max(packets/flows, 20)
	// 6 packets of handshake and close; data rounds take 3, probe rounds 2
	// (1 when unanswered: 1.9 on average); about 60 % of the packets are
	// data rounds.
	rest := perFlow - 6
	dataRounds := rest * 6 / 10 / 3
	probeRounds := (rest - 3*dataRounds) * 10 / 19
	type state struct{ c, s pkt }
	st := make([]state, flows)
	for i := range st {
		c := pkt{src: clientNet + uint32(i%60000) + 1, dst: serverIP, sport: uint16(20000 + i%40000), dport: 8443, seq: uint32(i) * 7919, window: 502, opts: tsOpts}
		s := pkt{src: serverIP, dst: c.src, sport: 8443, dport: c.sport, seq: uint32(i) * 104729, window: 509, opts: tsOpts}
		st[i] = state{c, s}
	}
	// Within a round flow i's packets come at i*step/flows: every flow once
	// per round, in a fixed order, so the file is in time order.
	off := func(i, sub int, step time.Duration) time.Duration {
		return time.Duration(i)*(step/time.Duration(flows)) + time.Duration(sub)*time.Microsecond
	}
	size := func(i, r int) int { return 1 + (i*31+r*17)%184 } // 67..250-byte frames
	const dataStep = 20 * time.Millisecond
	for i := range st {
		c, s := &st[i].c, &st[i].s
		syn := with(*c, flagsSYN, 0, 0)
		syn.opts = synOpts
		emit(start.Add(off(i, 0, dataStep)), syn)
		c.seq++
		synack := with(*s, flagsSYN|flagsACK, c.seq, 0)
		synack.opts = synOpts
		emit(start.Add(off(i, 1, dataStep)), synack)
		s.seq++
		emit(start.Add(off(i, 2, dataStep)), with(*c, flagsACK, s.seq, 0))
	}
	for r := 1; r <= dataRounds; r++ {
		base := start.Add(time.Duration(r) * dataStep)
		for i := range st {
			c, s := &st[i].c, &st[i].s
			req := size(i, r)
			emit(base.Add(off(i, 0, dataStep)), with(*c, flagsACK|flagsPSH, s.seq, req))
			c.seq += uint32(req)
			resp := size(i+7, r)
			emit(base.Add(off(i, 1, dataStep)), with(*s, flagsACK|flagsPSH, c.seq, resp))
			s.seq += uint32(resp)
			emit(base.Add(off(i, 2, dataStep)), with(*c, flagsACK, s.seq, 0))
		}
	}
	idle := start.Add(time.Duration(dataRounds+1) * dataStep)
	for p := 1; p <= probeRounds; p++ {
		base := idle.Add(time.Duration(p) * time.Second)
		for i := range st {
			c, s := &st[i].c, &st[i].s
			probe := with(*c, flagsACK, s.seq, 0)
			probe.seq--
			emit(base.Add(off(i, 0, time.Second)), probe)
			if i%10 != 0 {
				emit(base.Add(off(i, 1, time.Second)), with(*s, flagsACK, c.seq, 0))
			}
		}
	}
	end := idle.Add(time.Duration(probeRounds+1) * time.Second)
	for i := range st {
		c, s := &st[i].c, &st[i].s
		emit(end.Add(off(i, 0, time.Second)), with(*c, flagsFIN|flagsACK, s.seq, 0))
		c.seq++
		emit(end.Add(off(i, 1, time.Second)), with(*s, flagsFIN|flagsACK, c.seq, 0))
		s.seq++
		emit(end.Add(off(i, 2, time.Second)), with(*c, flagsACK, s.seq, 0))
	}
}
