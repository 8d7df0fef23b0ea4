package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestMPTCPSocketsReadExactly: MPTCP sockets (every Go ≥ 1.24 listener)
// take the keepalive options but answer TCP_USER_TIMEOUT with EOPNOTSUPP.
// Their values are read exactly, as getsockopt reads them inside the
// process, marked "mptcp", and the user timeout is "not supported", not a
// reason to fall back to inference (issue 12 item 1).
func TestMPTCPSocketsReadExactly(t *testing.T) {
	l := newLab(t, 70)
	// An MPTCP server: a connection that fell back to plain TCP answers
	// TCP_USER_TIMEOUT like TCP does.
	start(t, helper(l.server, "serve,0.0.0.0:8082,mptcp"))
	client := start(t, helper(l.client,
		"listen4,0.0.0.0:9092,mptcp,ka=1,idle=45,intvl=7,cnt=2", // listener handing on keepalive
		"dial4,"+l.link.A4+":8082,mptcp,ka=1,idle=30,intvl=5,cnt=3",
		"dial4,"+l.link.A4+":8080", // plain TCP beside them
	))
	h := client.sockets
	for _, hs := range h[:2] {
		if hs.Protocol != ipprotoMPTCP || hs.UserTimeoutErr == "" {
			t.Fatalf("helper socket %s: protocol %d, TCP_USER_TIMEOUT error %q: want an MPTCP socket without TCP_USER_TIMEOUT", hs.Spec, hs.Protocol, hs.UserTimeoutErr)
		}
	}
	ss := ssDump(t, l.client)
	r, err := ScanPIDs([]int{client.pid}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fds := byFD(r.Processes[0])
	for i, hs := range h {
		sk, ok := fds[hs.FD]
		if !ok {
			t.Fatalf("fd %d (%s) missing: %+v", hs.FD, hs.Spec, r.Processes[0].Sockets)
		}
		checkExact(t, sk, hs)
		want := "tcp"
		if i < 2 {
			want = "mptcp"
		}
		if sk.Protocol != want || sk.Keepalive.UserTimeoutUnsupported != (i < 2) {
			t.Errorf("fd %d (%s): protocol %q, user timeout unsupported %v; want %q, %v", hs.FD, hs.Spec, sk.Protocol, sk.Keepalive.UserTimeoutUnsupported, want, i < 2)
		}
		if o, ok := ss[sk.Inode]; !ok || o.state != sk.State {
			t.Errorf("fd %d: ss -tonie has ino %d as %+v, kadiag %s", hs.FD, sk.Inode, o, sk.State)
		}
	}
	lis := fds[h[0].FD]
	if lis.Verdict != Listen || lis.Reason != "accepted sockets inherit keepalive on, first probe after 45s" {
		t.Errorf("MPTCP listener: %s %q", lis.Verdict, lis.Reason)
	}
	if v := fds[h[1].FD].Verdict; v != OK {
		t.Errorf("MPTCP connection with idle 30 s: verdict %s, want ok", v)
	}
	// Inferred from timers, the protocol still comes from the MPTCP dump.
	inf, err := ScanPIDs([]int{client.pid}, Options{NoExact: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, hs := range h {
		want := "tcp"
		if i < 2 {
			want = "mptcp"
		}
		if got := byFD(inf.Processes[0])[hs.FD].Protocol; got != want {
			t.Errorf("inferred fd %d (%s): protocol %q, want %q", hs.FD, hs.Spec, got, want)
		}
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"protocol":"mptcp"`) || !strings.Contains(string(b), `"protocol":"tcp"`) {
		t.Errorf("JSON lacks the protocol fields: %s", b)
	}
	for _, n := range r.Notes {
		if strings.Contains(n, "privilege") || strings.Contains(n, "root") {
			t.Errorf("root scan notes a privilege problem: %q", n)
		}
	}
}

// TestFDReuseBetweenListingAndDuplication reuses a descriptor number after
// the listing: the duplicate is another socket, and its options must not be
// reported under the listed socket (issue 12 item 4). The target is this
// very process, so the reuse happens exactly between the two steps.
func TestFDReuseBetweenListingAndDuplication(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func(idle int) int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if idle > 0 {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle)
		}
		a := ln.Addr().(*net.TCPAddr)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: a.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	listed := dial(0)  // keepalive off
	other := dial(777) // keepalive on, idle 777
	defer unix.Close(listed)
	defer unix.Close(other)
	var st unix.Stat_t
	unix.Fstat(listed, &st)
	listedIno := st.Ino
	reused := false
	o := Options{noBPF: true, beforeDup: func(pid, fd int) {
		if fd == listed && !reused {
			reused = true
			// The process closes the number and reuses it for another socket.
			if err := unix.Dup2(other, listed); err != nil {
				t.Error(err)
			}
		}
	}}
	r, err := ScanPIDs([]int{os.Getpid()}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !reused {
		t.Fatal("the hook never ran for the listed descriptor")
	}
	for _, sk := range r.Processes[0].Sockets {
		if sk.FD == listed {
			t.Errorf("fd %d reported after its number was reused: %+v (listed inode %d)", listed, sk, listedIno)
		}
		if sk.Inode == listedIno && sk.Keepalive.IdleS == 777 {
			t.Errorf("the other socket's options reported for the listed one: %+v", sk)
		}
	}
	note := fmt.Sprintf("fd %d: descriptor number reused for another file: listed as socket:[%d]", listed, listedIno)
	found := false
	for _, n := range r.Notes {
		found = found || strings.Contains(n, note)
	}
	if !found {
		t.Errorf("notes %q lack %q", r.Notes, note)
	}
}

// TestInferredIdleIsALowerBound: under traffic the kernel re-arms the
// keepalive timer lazily, so "since last receive + until expiry" is below
// the real TCP_KEEPIDLE. A socket with KEEPIDLE 5 s receiving a byte every
// 200 ms is at risk against a 3 s middlebox; the inferred reading must
// never call it ok (issue 12 item 3). The inference is read as nobody with
// CAP_SYS_ADMIN only (enough for --netns, not for pidfd_getfd), as an
// unprivileged user gets it.
func TestInferredIdleIsALowerBound(t *testing.T) {
	l := newLab(t, 71)
	testenv.Need(t, "setpriv")
	start(t, helper(l.server, "chatter,[::]:8081"))
	client := start(t, helper(l.client, "dial4,"+l.link.A4+":8081,ka=1,idle=5"))
	fd := client.sockets[0].FD
	o := Options{MaxIdle: 3 * time.Second}

	exact, err := ScanPIDs([]int{client.pid}, o)
	if err != nil {
		t.Fatal(err)
	}
	if sk := byFD(exact.Processes[0])[fd]; sk.Keepalive.IdleS != 5 || sk.Verdict != AtRisk {
		t.Fatalf("exact reading %+v: want idle 5 s, at-risk", sk)
	}
	// Let the timer fire and re-arm under traffic at least once.
	time.Sleep(6 * time.Second)
	below := false
	for i := 0; i < 12; i++ {
		r := scanAsNobody(t, l.client.Path, o)
		if len(r.Processes) != 1 || len(r.Processes[0].Sockets) != 1 {
			t.Fatalf("scan %+v", r)
		}
		sk := r.Processes[0].Sockets[0]
		k := sk.Keepalive
		if k.Source != Inferred || !k.Enabled || !k.IdleLowerBound || k.IdleS > 5 {
			t.Fatalf("inferred %+v: want keepalive on, idle a lower bound of 5 s", k)
		}
		below = below || k.IdleS < 3
		if sk.Verdict == OK {
			t.Errorf("scan %d: inferred idle %d s judged ok; the real idle is 5 s, above 3 s", i, k.IdleS)
		}
		if k.IdleS < 3 && (sk.Verdict != Undetermined || !strings.Contains(sk.Reason, "lower bound")) {
			t.Errorf("scan %d: inferred idle %d s: %s %q, want unknown naming the lower bound", i, k.IdleS, sk.Verdict, sk.Reason)
		}
		if k.IdleS >= 3 && sk.Verdict != AtRisk {
			t.Errorf("scan %d: inferred idle %d s ≥ 3 s: %s, want at-risk", i, k.IdleS, sk.Verdict)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !below {
		t.Error("no reading fell below the middlebox's 3 s: the timer was not re-armed under traffic, the test proves nothing")
	}
}

// scanAsNobody runs ScanNetns in this test binary as nobody holding only
// CAP_SYS_ADMIN and returns its report.
func scanAsNobody(t *testing.T, path string, o Options) *Report {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+sys_admin", "--ambient-caps=-all,+sys_admin", "--bounding-set=-all,+sys_admin",
		os.Args[0], "netns", path, fmt.Sprint(int(o.MaxIdle/time.Millisecond)))
	cmd.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=scan")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("scan as nobody: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("scan as nobody: %v: %s", err, out)
	}
	return &r
}

// TestSocketOfAnotherNamespace: a process holds a TCP socket of another
// network namespace than its own (here handed to it at start, as over a
// UNIX socket). It is shown, with its namespace, matched against ss -tonie
// run in that namespace (issue 12 item 5).
func TestSocketOfAnotherNamespace(t *testing.T) {
	l := newLab(t, 72)
	var conn *os.File
	err := l.client.Do(func() error {
		c, err := net.Dial("tcp4", l.link.A4+":8080")
		if err != nil {
			return err
		}
		conn, err = c.(*net.TCPConn).File()
		c.Close()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(int(conn.Fd()), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(int(conn.Fd()), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 41); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Fstat(int(conn.Fd()), &st)
	// The holder lives in the server's namespace and has no sockets of its own.
	cmd := helper(l.server)
	cmd.ExtraFiles = []*os.File{conn} // its fd 3
	holder := start(t, cmd)
	conn.Close()

	r, err := ScanPIDs([]int{holder.pid}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := netnsID(holder.pid)
	var clientIno uint64
	l.client.Do(func() error { clientIno = selfNetns(); return nil })
	want := fmt.Sprintf("net:[%d]", clientIno)
	var got *Socket
	for i, sk := range r.Processes[0].Sockets {
		if sk.FD == 3 {
			got = &r.Processes[0].Sockets[i]
		}
	}
	if got == nil {
		t.Fatalf("fd 3 (socket:[%d] of %s) missing from the holder (in %s): sockets %+v, notes %q", st.Ino, want, id, r.Processes[0].Sockets, r.Notes)
	}
	if got.Netns != want || got.Inode != st.Ino || got.State != "ESTABLISHED" || !got.Keepalive.Source.IsExact() || got.Keepalive.IdleS != 41 {
		t.Errorf("fd 3: %+v, want socket:[%d] of %s, established, idle 41 s read exactly", got, st.Ino, want)
	}
	ss := ssDump(t, l.client)
	if o, ok := ss[st.Ino]; !ok || o.local != got.Local || o.remote != got.Remote {
		t.Errorf("ss -tonie in the client namespace: %+v, kadiag %s -> %s", o, got.Local, got.Remote)
	}
}

// TestNetClsCgroupLeftAlone: pidfd_getfd rewrites a socket's net_cls
// classid to the caller's (cgroup v1). A process in another net_cls cgroup
// than kadiag's is therefore not duplicated: its values are inferred, a
// note says why, and its socket's classid, as ss --tos reads it, is the
// same after the scan (issue 12 item 6). The net_cls hierarchy is mounted
// for the test and removed after it.
func TestNetClsCgroupLeftAlone(t *testing.T) {
	l := newLab(t, 73)
	testenv.Need(t, "sh")
	dir := t.TempDir()
	if err := unix.Mount("net_cls", dir, "cgroup", 0, "net_cls"); err != nil {
		testenv.SkipOrFail(t, "mount a net_cls v1 hierarchy: %v", err)
	}
	cg := dir + fmt.Sprintf("/kadiag-t%d", os.Getpid())
	t.Cleanup(func() {
		// The helper is gone by now (its cleanup ran first).
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove %s: %v", cg, err)
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	const classid = 0x100042
	if err := os.WriteFile(cg+"/net_cls.classid", []byte(fmt.Sprint(classid)), 0); err != nil {
		t.Fatal(err)
	}
	// The shell joins the cgroup, then becomes the helper, whose socket is
	// created there and gets the cgroup's classid.
	inner := helper(l.client, "dial4,"+l.link.A4+":8080,ka=1,idle=60")
	cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg}, inner.Args...)...)
	cmd.Env = inner.Env
	client := start(t, cmd)
	before := ssClassIDs(t, l.client)
	want := fmt.Sprintf("%#x", classid)
	if len(before) != 1 || before[0] != want {
		t.Fatalf("ss --tos before the scan: class ids %q, want [%s]", before, want)
	}

	r, err := ScanPIDs([]int{client.pid}, Options{noBPF: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := ssClassIDs(t, l.client); len(after) != 1 || after[0] != want {
		t.Errorf("the scan changed the socket's net_cls classid: %q, was %s", after, want)
	}
	sk := r.Processes[0].Sockets
	if len(sk) != 1 || sk[0].Keepalive.Source != Inferred {
		t.Errorf("sockets %+v: want one, inferred", sk)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "net_cls classid") || !strings.Contains(r.Notes[0], "/kadiag-t") {
		t.Errorf("notes %q: want one naming the net_cls cgroup", r.Notes)
	}
	// The BPF iterators duplicate nothing: exact values, classid unchanged.
	r, err = ScanPIDs([]int{client.pid}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if after := ssClassIDs(t, l.client); len(after) != 1 || after[0] != want {
		t.Errorf("the BPF scan changed the socket's net_cls classid: %q, was %s", after, want)
	}
	if sk := r.Processes[0].Sockets; len(sk) != 1 || sk[0].Keepalive.Source != BPF || sk[0].Keepalive.IdleS != 60 || len(r.Notes) != 0 {
		t.Errorf("BPF scan: sockets %+v notes %q: want one read by BPF (idle 60s), no note", sk, r.Notes)
	}
}

// ssClassIDs returns the class_id ss --tos shows for each established TCP
// socket in n.
func ssClassIDs(t *testing.T, n *testenv.Netns) []string {
	t.Helper()
	out, err := n.Command("ss", "-tn", "--tos", "state", "established").Output()
	if err != nil {
		t.Fatalf("ss --tos: %v", err)
	}
	var ids []string
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "class_id:"); ok {
			ids = append(ids, v)
		}
	}
	if ids == nil {
		t.Logf("ss --tos: %s", out)
	}
	return ids
}

// TestRootWithoutCapabilitiesNotToldToRunAsRoot: root whose capability
// bounding set lacks CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (a container)
// cannot read another user's descriptors; the message names what is
// missing instead of telling root to "run as root" (issue 12 item 12).
func TestRootWithoutCapabilitiesNotToldToRunAsRoot(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", os.Args[0], "dial4,127.0.0.1:9")
	cmd.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=1")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd.Args[len(cmd.Args)-1] = "dial4," + ln.Addr().String()
	target := start(t, cmd)
	drop := "-all,+sys_admin,+net_admin,+setuid,+setgid"
	scan := exec.Command("setpriv", "--inh-caps="+drop, "--bounding-set="+drop, os.Args[0], "pid", fmt.Sprint(target.pid), "350000")
	scan.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=scan")
	out, err := scan.CombinedOutput()
	if err == nil {
		t.Fatalf("root without CAP_SYS_PTRACE read nobody's descriptors: %s", out)
	}
	msg := string(out)
	t.Log(msg)
	if strings.Contains(msg, "run as root") || !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "CAP_SYS_PTRACE") {
		t.Errorf("root without capabilities: %q; want a permission error naming CAP_SYS_PTRACE, not \"run as root\"", msg)
	}
}
