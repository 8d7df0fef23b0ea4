package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
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

// TestLiveStopsWhenTargetExits: a live capture of a real process ends by
// itself when the process exits, with its flows and a note, long before the
// caller's deadline.
func TestLiveStopsWhenTargetExits(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "nsenter", "python3")
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, client, server, 63)
	ln, err := listen(server, link.B4, 8090, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	// On SIGUSR1 it says goodbye and exits.
	script := fmt.Sprintf(`
import os, signal, socket, sys
c = socket.create_connection(("%s", 8090))
c.sendall(b"hello")
def bye(*_):
    c.sendall(b"bye")
    c.close()
    os._exit(0)
signal.signal(signal.SIGUSR1, bye)
print("ready", flush=True)
sys.stdin.read()
`, link.B4)
	cmd := client.Command("python3", "-c", script)
	testenv.StartReady(t, cmd)
	pid := cmd.Process.Pid

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Live(ctx, LiveOptions{Pid: pid, Ready: func() { syscall.Kill(pid, syscall.SIGUSR1) }}, Options{})
	if ctx.Err() != nil {
		t.Fatalf("the capture ran until the caller's deadline, although pid %d exited", pid)
	}
	if err != nil {
		t.Fatalf("a process's exit is not an error: %v", err)
	}
	note := strings.Join(res.Notes, "; ")
	if !strings.Contains(note, fmt.Sprintf("the capture stopped on its own: pid %d exited at ", pid)) || res.ReadError != "" {
		t.Errorf("notes %q, read error %q", note, res.ReadError)
	}
	if len(res.Flows) != 1 || res.Flows[0].Server != link.B4+":8090" || res.Flows[0].Packets < 2 {
		t.Errorf("flows %+v: want the goodbye of the connection to %s:8090", res.Flows, link.B4)
	}
}

// TestLiveStopsWhenInterfaceGoes: deleting the captured veth fails its
// reader, and the capture ends at once with what it saw, the error and a
// note, also when other interfaces are still being read.
func TestLiveStopsWhenInterfaceGoes(t *testing.T) {
	testenv.Privileged(t)
	for _, iface := range []bool{true, false} {
		t.Run(fmt.Sprintf("iface=%v", iface), func(t *testing.T) {
			client, server := testenv.NewNetns(t), testenv.NewNetns(t)
			link := testenv.Connect(t, client, server, 64)
			lo := LiveOptions{Netns: client.Path}
			if iface {
				lo.Iface = link.AName
			}
			h := client.Netlink(t)
			lo.Ready = func() {
				l, err := h.LinkByName(link.AName)
				if err == nil {
					err = h.LinkDel(l)
				}
				if err != nil {
					t.Errorf("delete %s: %v", link.AName, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := Live(ctx, lo, Options{})
			if ctx.Err() != nil {
				t.Fatal("the capture ran until the caller's deadline, although its interface was deleted")
			}
			var re *ReaderError
			if !errors.As(err, &re) || re.Iface != link.AName || !errors.Is(err, ErrInterfaceGone) {
				t.Fatalf("error %v, want a ReaderError on %s: %v", err, link.AName, ErrInterfaceGone)
			}
			if res == nil || res.ReadError != err.Error() || !strings.Contains(strings.Join(res.Notes, "; "), "the capture stopped on its own: read from "+link.AName) {
				t.Errorf("report %+v", res)
			}
		})
	}
}
