package capture

import (
	"fmt"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// TestLabOracle: on every capture of the lab's real traffic, in every
// encapsulation, kadiag's per-flow keep-alive and keep-alive ACK counts are
// tshark's.
func TestLabOracle(t *testing.T) {
	testenv.Need(t, "tshark")
	lc := runLab(t)
	for _, v := range makeVariants(t, lc, t.TempDir()) {
		t.Run(v.name, func(t *testing.T) {
			res, err := ReadFile(v.path, Options{})
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			checkOracle(t, v.path, res)
		})
	}
}

// TestLabVariantsAgree: every encapsulation of the same packets gives the
// same flows, counts and verdicts as the Ethernet capture.
func TestLabVariantsAgree(t *testing.T) {
	lc := runLab(t)
	want, err := ReadFile(lc.eth, Options{MaxIdle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range makeVariants(t, lc, t.TempDir()) {
		got, err := ReadFile(v.path, Options{MaxIdle: 2 * time.Second})
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		sameFlows(t, v.name, want, got, v.subset, v.sameCapture)
	}
}

// TestLiveMatchesTcpdump: kadiag's own AF_PACKET capture saw the same
// flows and packets as tcpdump on the same interface, and the pcapng it
// wrote reads back to the same analysis.
func TestLiveMatchesTcpdump(t *testing.T) {
	lc := runLab(t)
	tcpdump, err := ReadFile(lc.eth, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameFlows(t, "live vs tcpdump", tcpdump, lc.liveRes, nil, false)
	written, err := ReadFile(lc.live, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameFlows(t, "live written file vs live", lc.liveRes, written, nil, true)
	if lc.liveRes.Summary.Packets != written.Summary.Packets {
		t.Errorf("live saw %d packets, its file holds %d", lc.liveRes.Summary.Packets, written.Summary.Packets)
	}
}

// TestLabScenarios checks what each scenario must show on the wire.
func TestLabScenarios(t *testing.T) {
	lc := runLab(t)
	res, err := ReadFile(lc.eth, Options{MaxIdle: 2 * time.Second, ProbesEvery: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	flows := flowsByServer(t, res)
	get := func(port int) Flow {
		f, ok := flows[fmt.Sprint(port)]
		if !ok {
			t.Fatalf("no flow to port %d in %s", port, lc.eth)
		}
		return f
	}
	near := func(got, want float64) bool { return got >= want-0.1 && got <= want+0.3 }

	for _, port := range []int{portKeepalive, portIPv6, portServerKA} {
		f := get(port)
		if f.Probes < 2 || f.ProbeAcks != f.Probes || f.UnansweredProbes != 0 {
			t.Errorf("port %d: probes %d, acks %d, unanswered %d: want >= 2 probes, all answered", port, f.Probes, f.ProbeAcks, f.UnansweredProbes)
		}
		if !near(f.ProbeIntervalS.Median, 1) || !near(f.IdleBeforeProbeS, 1) || !near(f.MaxGapS, 1) {
			t.Errorf("port %d: interval %+v, first probe after %v, max gap %v: want about 1 s (TCP_KEEPIDLE = TCP_KEEPINTVL = 1)",
				port, f.ProbeIntervalS, f.IdleBeforeProbeS, f.MaxGapS)
		}
		if f.Verdict != VerdictOK || f.Assertion != AssertPass || f.Orientation != "syn" {
			t.Errorf("port %d: verdict %s assertion %s orientation %s (%s)", port, f.Verdict, f.Assertion, f.Orientation, f.Reason)
		}
	}
	if f := get(portKeepalive); f.ClientProbes != f.Probes || f.ServerProbes != 0 {
		t.Errorf("client keepalive: client probes %d, server probes %d", f.ClientProbes, f.ServerProbes)
	}
	if f := get(portServerKA); f.ServerProbes != f.Probes || f.ClientProbes != 0 {
		t.Errorf("server keepalive: client probes %d, server probes %d", f.ClientProbes, f.ServerProbes)
	}
	if f := get(portIPv6); !isV6(f) {
		t.Errorf("IPv6 flow reported as %s", f.Client)
	}
	if f := get(portNoKeepalive); f.Probes != 0 || f.Verdict != VerdictAtRisk || f.Assertion != AssertFail || f.MaxGapS < 3.4 {
		t.Errorf("no keepalive: probes %d verdict %s assertion %s gap %v", f.Probes, f.Verdict, f.Assertion, f.MaxGapS)
	}
	if f := get(portLost); f.Probes != 2 || f.ProbeAcks != 0 || f.UnansweredProbes != 2 || f.RSTs != 1 || f.Verdict != VerdictAtRisk {
		t.Errorf("lost probes: probes %d acks %d unanswered %d rsts %d verdict %s", f.Probes, f.ProbeAcks, f.UnansweredProbes, f.RSTs, f.Verdict)
	}
	if f := get(portZeroWindow); f.Probes != 0 || f.ZeroWindowProbes == 0 || f.WiresharkKeepAlives != f.ZeroWindowProbes {
		t.Errorf("zero window: probes %d, zero window probes %d, wireshark keep-alives %d: want 0 probes, the rest zero window probes",
			f.Probes, f.ZeroWindowProbes, f.WiresharkKeepAlives)
	}
	if f := get(portRetransmit); f.Probes != 0 || f.Retransmissions < 2 {
		t.Errorf("retransmit: probes %d retransmissions %d: want 0 probes, >= 2 retransmissions", f.Probes, f.Retransmissions)
	}
	if lc.vlan {
		if f := get(portVLAN); f.Probes < 2 {
			t.Errorf("vlan: probes %d", f.Probes)
		}
	}
	if res.Summary.AtRisk != 2 {
		t.Errorf("at risk: %d, want 2 (no keepalive, lost probes)", res.Summary.AtRisk)
	}
}
