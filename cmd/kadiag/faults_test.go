package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

// tinyTmpfs mounts a tmpfs of the given size on a fresh directory for the
// test: a disk that fills up.
func tinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	testenv.Privileged(t)
	dir := t.TempDir()
	if err := unix.Mount("kadiag-full", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0777"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// chatter keeps a TCP connection on the namespace's loopback busy with small
// segments (TCP_NODELAY) until the test ends: thousands of packets a second.
func chatter(t *testing.T, ns *testenv.Netns) {
	t.Helper()
	var ln net.Listener
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		c, err = net.Dial("tcp4", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			if _, err := s.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		msg := make([]byte, 200)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	t.Cleanup(func() {
		close(done)
		c.Close()
		s.Close()
		ln.Close()
		wg.Wait()
	})
}

// startCapture starts kadiag capture with a JSON report and waits until it
// runs (a second: the capture sockets open in milliseconds).
func startCapture(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(buildKadiag(t), append([]string{"capture", "-o", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(time.Second)
	return cmd, &stdout, &stderr
}

// exitCode is the exit code of a finished command's err, or -1 if it did
// not run to an exit (not started, killed by a signal).
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestCaptureDiskFull: --write onto a 64 KiB tmpfs while thousands of
// packets arrive. The disk fills long before Ctrl-C: kadiag still prints the
// report of everything it saw, exits 2 with one line naming the file and the
// cause, and leaves nothing on the disk: no partial file under the final
// name, no temporary file.
func TestCaptureDiskFull(t *testing.T) {
	disk := tinyTmpfs(t, "64k")
	ns := testenv.NewNetns(t)
	chatter(t, ns)
	out := filepath.Join(disk, "evidence.pcapng")
	cmd, stdout, stderr := startCapture(t, "--netns", ns.Path, "--iface", "lo", "--write", out)
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(os.Interrupt)
	code := exitCode(cmd.Wait())
	msg := strings.TrimSpace(stderr.String())
	if code != 2 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, out) || !strings.Contains(msg, "no space left on device") {
		t.Errorf("exit %d, stderr %q: want exit 2 and one line naming %s and the full disk", code, msg, out)
	}
	if strings.Contains(msg, "goroutine") || strings.Contains(msg, "panic") {
		t.Errorf("stack trace on stderr: %s", msg)
	}
	var rep struct {
		Summary struct{ Packets uint64 } `json:"summary"`
	}
	if err := json.Unmarshal(firstJSON(stdout.Bytes()), &rep); err != nil || rep.Summary.Packets < 1000 {
		t.Errorf("report: %v, %d packets (want the report of the whole capture): %.300s", err, rep.Summary.Packets, stdout)
	}
	ents, _ := os.ReadDir(disk)
	if len(ents) != 0 {
		t.Errorf("left on the full disk: %v", ents)
	}
}

// firstJSON returns the first JSON value of a stream (the capture report
// may be streamed flow by flow).
func firstJSON(b []byte) []byte {
	var v json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if dec.Decode(&v) != nil {
		return b
	}
	return v
}

// TestCaptureSIGINTValidPcapng: Ctrl-C in the middle of heavy traffic still
// saves a pcapng that tshark (an oracle nobody here wrote) reads to its end
// with exactly the packets the report counted, and kadiag capture --read
// agrees with its own live report.
func TestCaptureSIGINTValidPcapng(t *testing.T) {
	testenv.Need(t, "tshark")
	ns := testenv.NewNetns(t)
	chatter(t, ns)
	out := filepath.Join(t.TempDir(), "live.pcapng")
	cmd, stdout, stderr := startCapture(t, "--netns", ns.Path, "--iface", "lo", "--write", out)
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	// 0 or 1 (a flow judged at risk) both mean the report was written.
	if code := exitCode(cmd.Wait()); code != 0 && code != 1 {
		t.Fatalf("capture: exit %d, stderr %q", code, stderr)
	}
	var live struct {
		Summary struct{ Packets, TCPPackets uint64 } `json:"summary"`
	}
	if err := json.Unmarshal(firstJSON(stdout.Bytes()), &live); err != nil || live.Summary.Packets == 0 {
		t.Fatalf("live report: %v: %.300s", err, stdout)
	}
	// stdout only: tshark warns on stderr when run as root.
	ts, err := exec.Command("tshark", "-n", "-r", out, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark cannot read the saved file: %v\n%.500s", err, ts)
	}
	if n := uint64(strings.Count(string(ts), "\n")); n != live.Summary.Packets {
		t.Errorf("tshark reads %d packets, the live report counted %d", n, live.Summary.Packets)
	}
	read, _, code := runKadiag(t, "capture", "--read", out, "-o", "json")
	var again struct {
		Summary struct{ Packets, TCPPackets uint64 } `json:"summary"`
	}
	if code == 2 || json.Unmarshal(firstJSON([]byte(read)), &again) != nil || again.Summary != live.Summary {
		t.Errorf("--read of the saved file: exit %d, %+v; live %+v", code, again.Summary, live.Summary)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// TestWritersReplaceSymlinks: every file kadiag writes goes to a temporary
// file in the target directory, then rename(2) over the final name, which
// replaces a symlink there instead of writing through it. A symlink planted
// at the final name (to a file the attacker wants overwritten) leaves that
// file untouched.
func TestWritersReplaceSymlinks(t *testing.T) {
	writers := []struct {
		name  string
		final string // file name in dir
		args  func(dir string) []string
	}{
		{"preload extract", "libkadiag_keepalive.so", func(dir string) []string {
			return []string{"preload", "extract", "--dir", dir}
		}},
	}
	if os.Geteuid() == 0 {
		writers = append(writers, struct {
			name  string
			final string
			args  func(dir string) []string
		}{"capture --write", "out.pcapng", func(dir string) []string {
			ns := testenv.NewNetns(t)
			return []string{"capture", "--netns", ns.Path, "--iface", "lo", "--duration", "1s", "--write", filepath.Join(dir, "out.pcapng")}
		}}, struct {
			name  string
			final string
			args  func(dir string) []string
		}{"simulate --pcap", "lab.pcapng", func(dir string) []string {
			return []string{"simulate", "--idle", "2s", "--response-delay", "1s", "--pcap", filepath.Join(dir, "lab.pcapng"), "--", "true"}
		}})
	}
	// --report FILE (every command, branch reports): covered as soon as the
	// binary has it.
	if help, _, _ := runKadiag(t, "capture", "--help"); strings.Contains(help, "--report") {
		writers = append(writers, struct {
			name  string
			final string
			args  func(dir string) []string
		}{"--report", "report.html", func(dir string) []string {
			return []string{"capture", "--read", "../../testdata/capture/eth.pcap", "--report", filepath.Join(dir, "report.html")}
		}})
	} else {
		t.Log("this kadiag has no --report flag yet: that writer is not tested")
	}
	for _, w := range writers {
		for _, dangling := range []bool{false, true} {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			if !dangling {
				os.WriteFile(victim, []byte("precious"), 0o644)
			}
			final := filepath.Join(dir, w.final)
			if err := os.Symlink(victim, final); err != nil {
				t.Fatal(err)
			}
			_, stderr, code := runKadiag(t, w.args(dir)...)
			if code == 2 || code < 0 {
				t.Errorf("%s: exit 2: %s", w.name, stderr)
				continue
			}
			fi, err := os.Lstat(final)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
				t.Errorf("%s: %s is %v, %v: want a regular file replacing the symlink", w.name, final, fi, err)
			}
			b, err := os.ReadFile(victim)
			if dangling && !os.IsNotExist(err) {
				t.Errorf("%s: wrote through a dangling symlink: %v", w.name, err)
			}
			if !dangling && string(b) != "precious" {
				t.Errorf("%s: wrote through the symlink into its target: %q", w.name, b)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%s: temporary files left: %v", w.name, ents)
			}
		}
	}
}

// TestExtractDiskFull: the library does not fit on a 8 KiB tmpfs. The
// previous library at the final name (an older version, in use by running
// programs) stays whole; no temporary file is left; one line, exit 2.
func TestExtractDiskFull(t *testing.T) {
	disk := tinyTmpfs(t, "8k")
	old := filepath.Join(disk, "libkadiag_keepalive.so")
	if err := os.WriteFile(old, []byte("old library"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runKadiag(t, "preload", "extract", "--dir", disk)
	msg := strings.TrimSpace(stderr)
	if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, "no space left on device") {
		t.Errorf("exit %d, %q: want exit 2 and one line about the full disk", code, msg)
	}
	if b, _ := os.ReadFile(old); string(b) != "old library" {
		t.Errorf("the previous library was damaged: %q", b)
	}
	if ents, _ := os.ReadDir(disk); len(ents) != 1 {
		t.Errorf("left on the disk: %v", ents)
	}
}

// fullTmpfs is a tmpfs with no free block left: a file can still be
// created (inodes are free), but its first write fails with ENOSPC.
func fullTmpfs(t *testing.T) (dir string, filler string) {
	t.Helper()
	dir = tinyTmpfs(t, "8k")
	filler = filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		if _, err := f.Write(make([]byte, 1024)); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			return dir, filler
		}
	}
}

// onlyFiller fails the test if anything but the filler is on the full disk.
func onlyFiller(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "filler" {
		t.Errorf("left on the full disk: %v", ents)
	}
}

// TestSimulatePcapDiskFull: the disk fills before the lab's --pcap is
// written. The lab's report still reaches stdout (a real run can take
// minutes), the error is one line naming the file and the cause, exit 2,
// and no partial or temporary file is left.
func TestSimulatePcapDiskFull(t *testing.T) {
	disk, _ := fullTmpfs(t)
	pcap := filepath.Join(disk, "lab.pcapng")
	stdout, stderr, code := runKadiag(t, "simulate", "--idle", "2s", "--response-delay", "3s", "--scenario", "none", "--pcap", pcap, "-o", "json")
	msg := strings.TrimSpace(stderr)
	want := "cannot write --pcap file " + pcap + ": no space left on device"
	if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Errorf("exit %d, stderr %q: want exit 2 and one line containing %q", code, msg, want)
	}
	var rep struct {
		Scenarios []struct {
			Name    string `json:"name"`
			Outcome string `json:"outcome"`
		} `json:"scenarios"`
		Pcap *string `json:"pcap"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Scenarios) != 1 || rep.Scenarios[0].Name != "none" || rep.Scenarios[0].Outcome != "timeout" {
		// No keepalive, a reply after the 2 s expiry: the client times out.
		t.Errorf("want the lab's report on stdout, scenario none timed out (%v): %.400s", err, stdout)
	}
	if rep.Pcap != nil && *rep.Pcap != "" {
		t.Errorf("the report names a pcap that was not written: %q", *rep.Pcap)
	}
	onlyFiller(t, disk)
}

// TestReportDiskFull: one --report file does not fit. The other --report
// file and stdout are still written, the error names the file that
// failed (not its temporary name), exit 2, nothing half-written left.
func TestReportDiskFull(t *testing.T) {
	disk, _ := fullTmpfs(t)
	full := filepath.Join(disk, "report.html")
	ok := filepath.Join(t.TempDir(), "report.md")
	stdout, stderr, code := runKadiag(t, "capture", "--read", fx("eth.pcap"), "--report", full, "--report", ok, "-o", "json")
	msg := strings.TrimSpace(stderr)
	want := "cannot write report file " + full + ": no space left on device"
	if code != 2 || msg != "kadiag: "+want {
		t.Errorf("exit %d, stderr %q: want exit 2 and %q", code, msg, want)
	}
	if !json.Valid([]byte(stdout)) || !strings.Contains(stdout, `"flows"`) {
		t.Errorf("stdout is not the JSON report: %.300s", stdout)
	}
	if b, err := os.ReadFile(ok); err != nil || !strings.Contains(string(b), "Flow") && !strings.Contains(string(b), "flow") {
		t.Errorf("the other report was not written: %v %.200s", err, b)
	}
	onlyFiller(t, disk)

	// -o html with the page meant for the full disk only: stdout gets it
	// instead, so nothing is lost.
	stdout, _, code = runKadiag(t, "capture", "--read", fx("eth.pcap"), "--report", full, "-o", "html")
	if code != 2 || !strings.Contains(stdout, "<html") {
		t.Errorf("exit %d, stdout %.100q: want exit 2 and the page on stdout", code, stdout)
	}
	onlyFiller(t, disk)
}

// TestReportPathCheckedFirst: a --report in a missing directory fails
// before the command does anything (a lab run or capture is not lost to a
// typo at its end): extract leaves its directory empty.
func TestReportPathCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(t.TempDir(), "missing", "r.json")
	_, stderr, code := runKadiag(t, "preload", "extract", "--dir", dir, "--report", bad)
	msg := strings.TrimSpace(stderr)
	if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, "cannot write report file: create "+bad) || !strings.Contains(msg, "does the directory") {
		t.Errorf("exit %d, stderr %q", code, msg)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the command ran before the report path was checked: %v", ents)
	}
}
