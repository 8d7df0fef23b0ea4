package simulate

import (
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// packet builds one Ethernet/IPv4/TCP frame of the lab, at t seconds.
func packet(t *testing.T, start time.Time, at float64, src, dst net.IP, sp, dp uint16, seq uint32, flags string, payload int) capturedPacket {
	t.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: seq, Window: 65535}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		}
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	tcp.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(make([]byte, payload))); err != nil {
		t.Fatal(err)
	}
	ts := start.Add(time.Duration(at * float64(time.Second)))
	return capturedPacket{gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()}
}

// TestAnalyzePerFlow: a command with several connections. Flow A sends its
// request and waits; flow B keeps talking every half second; flow C closes
// at once. "Forgotten at" is A's own last packet plus the idle timeout,
// although the link as a whole was never silent that long; B and C never
// count (C was closed: conntrack's established timeout no longer applies).
func TestAnalyzePerFlow(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c, s := clientIP4.To4(), serverIP4.To4()
	var pkts []capturedPacket
	add := func(at float64, fromClient bool, sp uint16, seq uint32, flags string, n int) {
		if fromClient {
			pkts = append(pkts, packet(t, start, at, c, s, sp, 8080, seq, flags, n))
		} else {
			pkts = append(pkts, packet(t, start, at, s, c, 8080, sp, seq, flags, n))
		}
	}
	for _, sp := range []uint16{40000, 40001, 40002} {
		add(0, true, sp, 100, "S", 0)
		add(0.001, false, sp, 500, "SA", 0)
		add(0.002, true, sp, 101, "A", 0)
	}
	add(0.01, true, 40000, 101, "A", 80) // A: the request, then silence
	add(0.02, true, 40002, 101, "FA", 0) // C: closes
	add(0.03, false, 40002, 501, "FA", 0)
	for i := 1; i <= 12; i++ { // B: data every 0.5 s
		add(float64(i)*0.5, i%2 == 0, 40001, uint32(101+i*10), "A", 10)
	}
	ws := analyze(pkts, start, 3*time.Second, start.Add(7*time.Second))
	if ws.expiredAt == nil || round3(*ws.expiredAt) != 3.01 {
		t.Fatalf("expired at %v, want 3.01 (flow A's own last packet + 3s)", ws.expiredAt)
	}
	// Flow B alone (its handshake, then its data): never idle 3 s, not at
	// the end either (last packet 6 s, end 7 s).
	onlyB := append(append([]capturedPacket(nil), pkts[3:6]...), pkts[len(pkts)-12:]...)
	if ws := analyze(onlyB, start, 3*time.Second, start.Add(7*time.Second)); ws.expiredAt != nil {
		t.Errorf("flow B alone: expired at %v, want never", *ws.expiredAt)
	}
}
