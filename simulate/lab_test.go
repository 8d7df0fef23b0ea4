package simulate

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
	"github.com/kadiag/kadiag/simulate/client"
)

// TestNoLeak: after expiry the client's late packets are invalid for the
// middlebox; none may reach the server un-NATed, with either behaviour.
func TestNoLeak(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	for _, after := range []middlebox.AfterExpiry{middlebox.Reset, middlebox.Drop} {
		t.Run(string(after), func(t *testing.T) {
			t.Parallel()
			lab, err := NewLab(context.Background(), LabConfig{Hops: []middlebox.Hop{{Name: "mb", Idle: time.Second, After: after, NAT: true}}})
			if err != nil {
				t.Fatal(err)
			}
			defer lab.Close()
			srv, err := startServer(lab.Server(), ServerConfig{ResponseDelay: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			capt, err := startCapture(lab.Server(), serverLinkIf)
			if err != nil {
				t.Fatal(err)
			}
			exe, err := client.Binary("")
			if err != nil {
				t.Fatal(err)
			}
			bin, err := memFile("kadiag-client", exe)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			// Keepalive idle 2 s: every probe comes after the 1 s expiry.
			cmd := exec.Command(memPath(bin), "-k", "-i", "2", "-n", "1", "-c", "2", "-t", "5000", ServerURL(false))
			if err := startIn(lab.Client(), cmd); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code == client.ExitOK {
				t.Errorf("client survived the expiry (exit %d)", code)
			}
			pkts := capt.stop()
			var eth layers.Ethernet
			var ip4 layers.IPv4
			var tcp layers.TCP
			parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
			parser.IgnoreUnsupported = true
			var decoded []gopacket.LayerType
			natted := 0
			for _, p := range pkts {
				if err := parser.DecodeLayers(p.data, &decoded); err != nil || len(decoded) < 3 {
					continue
				}
				switch {
				case ip4.SrcIP.Equal(clientIP4):
					t.Errorf("un-NATed packet from the client on the server link: %v:%d -> %v:%d", ip4.SrcIP, tcp.SrcPort, ip4.DstIP, tcp.DstPort)
				case ip4.SrcIP.Equal(outsideIP4):
					natted++
				case !ip4.SrcIP.Equal(serverIP4):
					t.Errorf("unexpected source %v on the server link", ip4.SrcIP)
				}
			}
			if natted == 0 {
				t.Errorf("no NATed packets on the server link at all (%d captured)", len(pkts))
			}
		})
	}
}
