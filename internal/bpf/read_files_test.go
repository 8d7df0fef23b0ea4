package bpf

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestSocketFilesEqualsProcfs(t *testing.T) {
	n := testenv.NewNetns(t)
	var tcp, mptcp6, listener int
	must(t, n.Do(func() error {
		tcp = makeSocket(t, sockCases[2])
		mptcp6 = makeSocket(t, sockCases[7])
		listener = makeSocket(t, sockCases[1])
		return nil
	}))
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	must(t, err)
	closeFD(t, udp)
	unixfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(t, err)
	closeFD(t, unixfd)

	// A child holds the TCP socket at descriptor 3: another process, the
	// same inode.
	child := exec.Command("sleep", "60")
	// The os.File owns a duplicate: its finalizer must not close a
	// descriptor number the test's cleanup closes too.
	dup, err := unix.Dup(tcp)
	must(t, err)
	f := os.NewFile(uintptr(dup), "tcp")
	defer f.Close()
	child.ExtraFiles = []*os.File{f}
	must(t, child.Start())
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })

	got, err := socketFiles()
	must(t, err)
	type key struct{ pid, fd int }
	seen := map[key]uint64{}
	for _, f := range got {
		seen[key{f.PID, f.FD}] = f.Inode
	}
	self := os.Getpid()
	for _, fd := range []int{tcp, mptcp6, listener} {
		if ino, ok := seen[key{self, fd}]; !ok || ino != inode(t, fd) {
			t.Errorf("pid %d fd %d: read inode %d (present %v), fstat says %d", self, fd, ino, ok, inode(t, fd))
		}
	}
	if ino, ok := seen[key{child.Process.Pid, 3}]; !ok || ino != inode(t, tcp) {
		t.Errorf("child pid %d fd 3: read inode %d (present %v), want %d", child.Process.Pid, ino, ok, inode(t, tcp))
	}
	for _, fd := range []int{udp, unixfd} {
		if _, ok := seen[key{self, fd}]; ok {
			t.Errorf("fd %d (not an inet stream socket) listed", fd)
		}
	}
	// Every socket the iterator lists for this process is a socket:[inode]
	// link in /proc/self/fd.
	for k, ino := range seen {
		if k.pid != self {
			continue
		}
		var st unix.Stat_t
		must(t, unix.Fstat(k.fd, &st))
		if st.Ino != ino || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			t.Errorf("fd %d: iterator inode %d, fstat inode %d mode %o", k.fd, ino, st.Ino, st.Mode)
		}
	}

	// Scoped to one process: the same answer for it, nothing else.
	r, err := NewFilesReader()
	must(t, err)
	defer r.Close()
	of, err := r.of(child.Process.Pid)
	must(t, err)
	// (The child also inherited the accepted sockets: accept4 without
	// SOCK_CLOEXEC.) Of and All agree on it.
	inChild := 0
	for k := range seen {
		if k.pid == child.Process.Pid {
			inChild++
		}
	}
	has3 := false
	for _, f := range of {
		if ino, ok := seen[key{f.PID, f.FD}]; !ok || ino != f.Inode || f.PID != child.Process.Pid {
			t.Errorf("Of(child) has %+v, All has inode %d (present %v)", f, ino, ok)
		}
		has3 = has3 || (f.FD == 3 && f.Inode == inode(t, tcp))
	}
	if !has3 || len(of) != inChild {
		t.Errorf("Of(child): %+v; want fd 3 with inode %d among the %d All lists", of, inode(t, tcp), inChild)
	}
	mine, err := r.of(self)
	must(t, err)
	count := 0
	for k := range seen {
		if k.pid == self {
			count++
		}
	}
	if len(mine) != count {
		t.Errorf("Of(self): %d descriptors, All: %d", len(mine), count)
	}
	child.Process.Kill()
	child.Wait()
	if gone, err := r.of(child.Process.Pid); err != nil || len(gone) != 0 {
		t.Errorf("Of(exited pid): %+v, %v; want nothing", gone, err)
	}
}

// TestFilesReaderReadsSockets: the task_file walk reads every TCP socket a
// descriptor refers to exactly as getsockopt answers, and as the
// namespace's iter/tcp walk reads it, field by field; an MPTCP socket of
// one subflow (listeners, connections) reads as that subflow, as the walk
// reads it. The sockets live in a namespace that is not the test's: the
// record names it.
func TestFilesReaderReadsSockets(t *testing.T) {
	n := testenv.NewNetns(t)
	fds := makeCases(t, n)
	var st unix.Stat_t
	must(t, unix.Fstat(int(n.Handle), &st))
	tr, err := NewTCPReader()
	must(t, err)
	defer tr.Close()
	walked, err := tr.read(n.Handle, false)
	must(t, err)
	byInode := map[uint64]TCPSocket{}
	for _, s := range walked {
		byInode[s.Inode] = s
	}
	r, err := NewFilesReader()
	must(t, err)
	defer r.Close()
	for _, read := range []struct {
		name string
		f    func(func(*FileSocket)) error
	}{
		{"All", r.Each},
		{"Of", func(f func(*FileSocket)) error { return r.EachOf(os.Getpid(), f) }},
	} {
		var got []TCPSocket
		byFD := map[int]FileSocket{}
		must(t, read.f(func(f *FileSocket) {
			if f.PID != os.Getpid() {
				return
			}
			byFD[f.FD] = *f
			if f.Full {
				got = append(got, f.TCP)
			}
		}))
		want := make([]int, len(fds))
		for i, fd := range fds {
			want[i] = fd
			f, ok := byFD[fd]
			if !ok {
				t.Errorf("%s: %s: fd %d not read", read.name, sockCases[i].name, fd)
				continue
			}
			if f.Netns != uint32(st.Ino) || f.Inode != inode(t, fd) {
				t.Errorf("%s: %s: netns %d inode %d, want %d and %d", read.name, sockCases[i].name, f.Netns, f.Inode, st.Ino, inode(t, fd))
			}
			if !f.Full {
				t.Errorf("%s: %s: not read in full (protocol %d)", read.name, sockCases[i].name, f.Protocol)
				continue
			}
			w := byInode[f.Inode]
			g := f.TCP
			// The clocks move between the two reads.
			g.LastDataRecvMs, g.LastAckRecvMs, g.TimerExpiresMs = w.LastDataRecvMs, w.LastAckRecvMs, w.TimerExpiresMs
			if g != w {
				t.Errorf("%s: %s:\n task_file %+v\n iter/tcp  %+v", read.name, sockCases[i].name, f.TCP, w)
			}
		}
		checkRead(t, got, want)
	}
}

// TestFilesReaderWithoutCast: on a kernel without bpf_rdonly_cast the
// program still loads and lists every descriptor, none of them full, so
// that the scan walks their namespaces.
func TestFilesReaderWithoutCast(t *testing.T) {
	noCast = true
	defer func() { noCast = false }()
	n := testenv.NewNetns(t)
	var fd int
	must(t, n.Do(func() error { fd = makeSocket(t, sockCases[4]); return nil }))
	r, err := NewFilesReader()
	must(t, err)
	defer r.Close()
	var got []FileSocket
	must(t, r.EachOf(os.Getpid(), func(f *FileSocket) { got = append(got, *f) }))
	found := false
	for _, f := range got {
		if f.Full {
			t.Errorf("fd %d read in full without the cast", f.FD)
		}
		if f.FD == fd {
			found = f.Inode == inode(t, fd) && f.Protocol == unix.IPPROTO_TCP
		}
	}
	if !found {
		t.Errorf("fd %d (inode %d) not listed: %+v", fd, inode(t, fd), got)
	}
}

// TestFilesReaderLeavesSeveralSubflows: an MPTCP connection that grew a
// second subflow is left to the namespace's iter/tcp walk (which compares
// its subflows), not read as one of them.
func TestFilesReaderLeavesSeveralSubflows(t *testing.T) {
	testenv.Need(t, "ip")
	n := testenv.NewNetns(t)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	// A second address on lo and an endpoint that opens a subflow from it.
	ip("addr", "add", "198.18.77.2/32", "dev", "lo")
	ip("mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2")
	ip("mptcp", "endpoint", "add", "198.18.77.2", "dev", "lo", "subflow")
	var fd int
	must(t, n.Do(func() error { fd = makeSocket(t, sockCases[8]); return nil }))
	// The path manager adds subflows once the connection is fully
	// established: after data.
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTCPReader()
	must(t, err)
	defer tr.Close()
	subflows := 0
	for try := 0; try < 100 && subflows < 2; try++ {
		time.Sleep(20 * time.Millisecond)
		got, err := tr.read(n.Handle, false)
		must(t, err)
		subflows = 0
		for _, s := range got {
			if s.Inode == inode(t, fd) && s.State == 1 {
				subflows++
			}
		}
	}
	if subflows < 2 {
		t.Fatalf("the connection has %d subflows after 2 s, want 2", subflows)
	}
	r, err := NewFilesReader()
	must(t, err)
	defer r.Close()
	seen := false
	must(t, r.EachOf(os.Getpid(), func(f *FileSocket) {
		if f.FD == fd {
			seen = true
			if f.Full || f.Protocol != IPProtoMPTCP {
				t.Errorf("fd %d of %d subflows: full %v protocol %d, want it left to the walk", fd, subflows, f.Full, f.Protocol)
			}
		}
	}))
	if !seen {
		t.Errorf("fd %d not listed", fd)
	}
}
