package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/reports"
)

const captureFixtures = "../../testdata/capture"

func fx(name string) string { return filepath.Join(captureFixtures, name) }

// TestCaptureJSONContract checks the kadiag.capture/v1 field names the
// issue fixed, on a real capture.
func TestCaptureJSONContract(t *testing.T) {
	stdout, stderr, code := runKadiag(t, "capture", "--read", fx("ipv6.pcap"), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if doc["schema"] != "kadiag.capture/v1" || doc["max_idle_s"] != 350.0 {
		t.Errorf("schema %v max_idle_s %v", doc["schema"], doc["max_idle_s"])
	}
	flows, _ := doc["flows"].([]any)
	if len(flows) != 1 {
		t.Fatalf("flows: %v", doc["flows"])
	}
	f := flows[0].(map[string]any)
	for _, k := range []string{"client", "server", "packets", "bytes", "probes", "probe_acks", "probe_interval_s", "max_gap_s", "rsts", "verdict"} {
		if _, ok := f[k]; !ok {
			t.Errorf("flow lacks %q: %v", k, f)
		}
	}
	iv, _ := f["probe_interval_s"].(map[string]any)
	for _, k := range []string{"min", "median", "max"} {
		if _, ok := iv[k]; !ok {
			t.Errorf("probe_interval_s lacks %q", k)
		}
	}
	if !strings.HasPrefix(f["client"].(string), "[fd00:6b61:") || f["verdict"] != "ok" || f["probes"].(float64) < 2 {
		t.Errorf("flow %v", f)
	}
	sum, _ := doc["summary"].(map[string]any)
	for _, k := range []string{"flows", "ok", "at_risk", "packets"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary lacks %q: %v", k, sum)
		}
	}
}

func TestCaptureExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string // stdout for 0/1, stderr for 2
	}{
		{"all ok", []string{"--read", fx("ipv6.pcap")}, 0, "1 flows: 1 ok, 0 at risk"},
		{"preset", []string{"--read", fx("ipv6.pcap"), "--max-idle", "aws-nat", "-o", "json"}, 0, `"max_idle_s": 350`},
		{"lost probes at risk", []string{"--read", fx("eth.pcap")}, 1, "unanswered"},
		{"silence at risk", []string{"--read", fx("ipv4.pcap"), "--max-idle", "2s"}, 1, "with no keepalive probe"},
		{"assert fails", []string{"--read", fx("ipv6.pcap"), "--assert-probes-every", "500ms"}, 1, "assert-failed"},
		{"assert passes", []string{"--read", fx("ipv6.pcap"), "--assert-probes-every", "2s"}, 0, "0 failed --assert-probes-every"},
		{"gzip pcapng", []string{"--read", fx("multi.pcapng.gz"), "--max-idle", "1h"}, 1, "7 flows"},
		{"no input", []string{}, 2, "one of the flags"},
		{"two inputs", []string{"--read", fx("eth.pcap"), "--netns", "/run/netns/x"}, 2, "none of the others"},
		{"write offline", []string{"--read", fx("eth.pcap"), "--write", "x.pcapng"}, 2, "--write works only with a live capture"},
		{"bad max idle", []string{"--read", fx("eth.pcap"), "--max-idle", "soon"}, 2, "--max-idle"},
		{"bad assert", []string{"--read", fx("eth.pcap"), "--assert-probes-every", "0"}, 2, "--assert-probes-every"},
		{"missing file", []string{"--read", "/nonexistent.pcap"}, 2, "no such file"},
		{"not a capture", []string{"--read", "capture.go"}, 2, "unknown magic"},
		{"no such netns", []string{"--netns", "/run/netns/kadiag-none", "--duration", "1s"}, 2, "network namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runKadiag(t, append([]string{"capture"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.code, stdout, stderr)
			}
			out := stdout
			if code == 2 {
				out = stderr
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
					t.Errorf("error is %d lines: %q", n+1, stderr)
				}
			}
			if !strings.Contains(out, tt.contains) {
				t.Errorf("output lacks %q:\n%s", tt.contains, out)
			}
		})
	}
}

// TestCaptureBrokenFile: a truncated capture gives the report of what was
// read, then a one-line error with the byte offset, exit 2.
func TestCaptureBrokenFile(t *testing.T) {
	b, err := os.ReadFile(fx("eth.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	os.WriteFile(cut, b[:len(b)-7], 0o644)
	stdout, stderr, code := runKadiag(t, "capture", "--read", cut, "-o", "json")
	if code != 2 || !strings.Contains(stderr, "byte offset") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	var doc struct {
		Flows     []any  `json:"flows"`
		ReadError string `json:"read_error"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Flows) == 0 || "kadiag: "+doc.ReadError+"\n" != stderr {
		t.Errorf("report of what was read: %v %q", err, stdout)
	}
}

func TestCaptureJUnit(t *testing.T) {
	stdout, _, code := runKadiag(t, "capture", "--read", fx("eth.pcap"), "--max-idle", "2s", "-o", "junit")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var s reports.Suites
	if err := xml.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("junit: %v", err)
	}
	// The lab's no-keepalive and lost-probe flows.
	if s.Tests != 7 || s.Failures != 2 {
		t.Errorf("junit tests %d failures %d, want 7 and 2", s.Tests, s.Failures)
	}
}

// TestCaptureLivePid: kadiag capture --pid on a real process in a netns sees
// that process's flow only, with the probes tcpdump saw on the same
// interface, and writes a pcapng that reads back the same.
func TestCaptureLivePid(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3", "tcpdump", "tshark")
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	link := testenv.Connect(t, client, server, 71)

	srv := server.Command("python3", "-c", fmt.Sprintf(`
import socket, threading, time
def serve(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("%s", port)); l.listen(8)
    while True:
        c, _ = l.accept(); threading.Thread(target=lambda c=c: (c.recv(100), time.sleep(60)), daemon=True).start()
for p in (8090, 8091): threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True); time.sleep(60)
`, link.B4))
	capStartReady(t, srv)
	// The process under test: keepalive on, 1 s idle and interval.
	ka := client.Command("python3", "-c", fmt.Sprintf(`
import socket, time
s = socket.create_connection(("%s", 8090))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.send(b"x" * 10)
print("ready", flush=True)
# A connection opened while kadiag watches: --pid must follow it.
time.sleep(0.5)
s2 = socket.create_connection(("%s", 8091))
s2.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
time.sleep(60)
`, link.B4, link.B4))
	capStartReady(t, ka)
	// Another process in the same namespace, also probing: not ours.
	other := client.Command("python3", "-c", fmt.Sprintf(`
import socket, time
s = socket.create_connection(("%s", 8091))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
print("ready", flush=True); time.sleep(60)
`, link.B4))
	capStartReady(t, other)

	dir := t.TempDir()
	dump := filepath.Join(dir, "tcpdump.pcap")
	td := client.Command("tcpdump", "--immediate-mode", "-U", "-n", "-i", link.AName, "-w", dump, "tcp port 8090")
	capStartReadyStderr(t, td, "listening on")
	written := filepath.Join(dir, "kadiag.pcapng")
	stdout, stderr, code := runKadiag(t, "capture", "--pid", fmt.Sprint(ka.Process.Pid), "--duration", "4500ms",
		"--write", written, "--max-idle", "10s", "-o", "json")
	time.Sleep(200 * time.Millisecond)
	td.Process.Signal(syscall.SIGINT)
	td.Wait()
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	var live struct {
		Flows []struct {
			Client, Server string
			Packets        uint64
			Probes         int
			ProbeAcks      int `json:"probe_acks"`
			Verdict        string
		} `json:"flows"`
	}
	if err := json.Unmarshal([]byte(stdout), &live); err != nil {
		t.Fatal(err)
	}
	// The process's first connection, and the one it opened meanwhile; not
	// the other process's connection to the same server port.
	if len(live.Flows) != 2 || !strings.HasSuffix(live.Flows[0].Server, ":8090") || !strings.HasSuffix(live.Flows[1].Server, ":8091") {
		t.Fatalf("--pid saw %+v, want the flows to ports 8090 and (opened later) 8091", live.Flows)
	}
	if live.Flows[1].Probes < 1 {
		t.Errorf("the connection opened during the capture: %+v, want its probes", live.Flows[1])
	}
	// The capture can end between the last probe and its ACK, so that one
	// probe may go unseen answered; every earlier one must be acknowledged.
	if f := live.Flows[0]; f.Probes < 2 || f.ProbeAcks < f.Probes-1 || f.ProbeAcks > f.Probes {
		t.Errorf("live flow %+v: want >= 2 probes, all acknowledged but perhaps the last", f)
	}
	// Same counts from the kernel's own copy of the traffic, and from the
	// file kadiag wrote.
	for _, file := range []string{dump, written} {
		out, _, _ := runKadiag(t, "capture", "--read", file, "--max-idle", "10s", "-o", "json")
		var got struct {
			Flows []struct {
				Probes    int
				ProbeAcks int `json:"probe_acks"`
			} `json:"flows"`
		}
		json.Unmarshal([]byte(out), &got)
		if len(got.Flows) == 0 {
			t.Errorf("%s: no flows", file)
			continue
		}
		// tcpdump started before kadiag and stopped after it: a probe more at
		// either end, at one a second.
		if d := got.Flows[0].Probes - live.Flows[0].Probes; d < 0 || d > 2 || (file == written && d != 0) {
			t.Errorf("%s: %d probes, live capture saw %d", file, got.Flows[0].Probes, live.Flows[0].Probes)
		}
	}
	if err := exec.Command("tshark", "-r", written, "-c", "1").Run(); err != nil {
		t.Errorf("tshark cannot read kadiag's pcapng: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

// capStartReady starts cmd and waits for it to print "ready", and nothing
// before it.
func capStartReady(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if lines := testenv.StartReady(t, cmd); len(lines) != 0 {
		t.Fatalf("%v did not get ready: printed %q first", cmd.Args, lines)
	}
}

func capStartReadyStderr(t *testing.T, cmd *exec.Cmd, want string) {
	t.Helper()
	errp, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(errp)
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			go func() {
				for sc.Scan() {
				}
			}()
			return
		}
	}
	t.Fatalf("%v did not start", cmd.Args)
}

// TestCaptureInterrupt: Ctrl-C (SIGINT) or SIGTERM ends a live capture of a
// namespace with its report and the saved file; a --write into a missing
// directory fails before capturing.
func TestCaptureInterrupt(t *testing.T) {
	testenv.Privileged(t)
	ns := testenv.NewNetns(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		out := filepath.Join(t.TempDir(), "quiet.pcapng")
		cmd := exec.Command(buildKadiag(t), "capture", "--netns", ns.Path, "--iface", "lo", "--write", out, "-o", "json")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if err != nil {
			t.Fatalf("%v: %v, stderr %q", sig, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), `"schema": "kadiag.capture/v1"`) {
			t.Errorf("%v: no report: %q", sig, stdout.String())
		}
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			t.Errorf("%v: saved file: %v", sig, err)
		}
	}
	_, stderr, code := runKadiag(t, "capture", "--netns", ns.Path, "--duration", "1s", "--write", "/nonexistent/dir/x.pcapng")
	if code != 2 || !strings.Contains(stderr, "/nonexistent/dir/x.pcapng") {
		t.Errorf("write into a missing directory: exit %d, %q", code, stderr)
	}
	_, stderr, code = runKadiag(t, "capture", "--netns", ns.Path, "--iface", "eth9", "--duration", "1s")
	if code != 2 || !strings.Contains(stderr, `no interface named "eth9"`) {
		t.Errorf("missing interface: exit %d, %q", code, stderr)
	}
}
