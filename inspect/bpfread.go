package inspect

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/parallel"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BPF: exact values read by kadiag's iter/tcp program straight from the
// kernel's socket structures (struct tcp_sock and struct sock), equal to
// what getsockopt answers. The preferred exact read: it touches no socket
// (no pidfd_getfd, so no net_cls/net_prio rewrite), needs no ptrace right
// and costs a few reads per namespace instead of seven system calls per
// socket. It needs kernel BTF and CAP_BPF + CAP_PERFMON.
const BPF Source = "bpf"

// IsExact reports whether values were read from the socket (getsockopt or
// BPF), not inferred from timers.
func (s Source) IsExact() bool { return s == Exact || s == BPF }

// bpfPath is a scan's BPF read path: the task_file walks of the
// processes' descriptors, which read their sockets (the namespaces that
// still need an iter/tcp walk hold the program themselves).
type bpfPath struct {
	// files holds, by pid, the descriptors the task_file walk listed, with
	// the sockets it read through them; a pid missing here is listed from
	// /proc. fileErrs: pids the scoped walk found gone.
	files    map[int][]fdSocket
	fileErrs map[int]error
	read     atomic.Int64 // sockets whose values it gave
	// fellBack counts sockets it saw but left to pidfd_getfd: MPTCP sockets
	// whose subflows disagree.
	fellBack atomic.Int64
}

// openBPF sets up the BPF path unless exact values are not wanted, and
// lists the processes' descriptors with it (listBPF). bpfWhy says, for
// --explain-source, why the BPF path is or is not used.
func (s *scan) openBPF() {
	switch {
	case s.o.NoExact:
		s.bpfWhy = "exact reads not asked for"
		return
	case s.o.noBPF:
		s.bpfWhy = "BPF reads turned off"
		return
	}
	r := loadReaders()
	if r.availErr != nil {
		s.bpfWhy = r.availErr.Error()
		return
	}
	if r.filesErr != nil {
		// Descriptors from /proc: every namespace's sockets from its walk.
		tcp, err := loadTCP()
		if err != nil {
			s.bpfFailed(err)
			return
		}
		s.bpf = &bpfPath{}
		for _, n := range s.nss {
			n.tcp, n.walk = tcp, true
		}
		s.bpfWhy = "the kernel has BTF and kadiag has CAP_BPF and CAP_PERFMON; descriptors listed from /proc: " + r.filesErr.Error()
		s.notef("the BPF task_file iterator failed, descriptors listed from /proc instead: %v", r.filesErr)
		return
	}
	s.bpf = &bpfPath{}
	s.bpfWhy = "the kernel has BTF and kadiag has CAP_BPF and CAP_PERFMON"
	s.listBPF(r.files)
	// The iter/tcp program is loaded only for a namespace that needs it.
	var walk []*namespace
	for _, n := range s.nss {
		if n.walk {
			walk = append(walk, n)
		}
	}
	if len(walk) == 0 {
		return
	}
	tcp, err := loadTCP()
	if err != nil {
		s.notef("BPF TCP iterator unavailable, sockets of %d namespaces read with inet_diag and pidfd_getfd instead: %v", len(walk), err)
		return
	}
	for _, n := range walk {
		n.tcp = tcp
	}
}

// listBPF lists the processes' descriptors with the task_file program and,
// through them, reads their TCP sockets: one scoped walk per process (one
// walk over every task where the kernel cannot scope it), whatever
// namespaces the sockets live in. A namespace is then walked with iter/tcp only when one of its
// processes holds a socket the descriptor read cannot give (MPTCP: its
// options live in subflows no descriptor refers to).
func (s *scan) listBPF(fr *bpf.FilesReader) {
	files := make(map[int][]fdSocket, len(s.procs))
	for _, p := range s.procs {
		files[p.PID] = nil
	}
	// One scoped walk per process, on every CPU. Each is read into a
	// scratch list that keeps its capacity, then copied once: growing each
	// process's list costs more than the copy.
	listOne := func(pid int) ([]fdSocket, error) {
		sp := fdScratch.Get().(*[]fdSocket)
		defer fdScratch.Put(sp)
		l := (*sp)[:0]
		err := fr.EachOf(pid, func(f *bpf.FileSocket) { l = append(l, fdOf(f)) })
		*sp = l[:0]
		return slices.Clone(l), err
	}
	lists := make([][]fdSocket, len(s.procs))
	errs := make([]error, len(s.procs))
	scoped := len(s.procs) > 0
	if scoped {
		// A kernel before 6.1 cannot scope the walk to a process: it gets
		// one walk over every task.
		lists[0], errs[0] = listOne(s.procs[0].PID)
		scoped = !errors.Is(errs[0], bpf.ErrUnsupported)
	}
	var err error
	if scoped {
		parallel.For(len(s.procs)-1, func(i int) { lists[i+1], errs[i+1] = listOne(s.procs[i+1].PID) })
		s.bpf.fileErrs = map[int]error{}
		for i, p := range s.procs {
			switch {
			case errs[i] != nil:
				delete(files, p.PID) // listed from /proc
				continue
			case len(lists[i]) == 0:
				// No sockets, or no process any more: only the latter is news.
				if _, err := comm(p.PID); errors.Is(err, ErrNoProcess) {
					s.bpf.fileErrs[p.PID] = err
				}
			}
			files[p.PID] = lists[i]
		}
	} else {
		err = fr.Each(func(f *bpf.FileSocket) {
			if l, ok := files[f.PID]; ok {
				files[f.PID] = append(l, fdOf(f))
			}
		})
		if err != nil {
			for _, n := range s.nss {
				n.walk = true // descriptors from /proc: sockets from the walks
			}
		}
		if errors.Is(err, bpf.ErrPidNamespace) {
			// Descriptors come from this namespace's /proc; options still from BPF.
			s.bpfWhy += "; descriptors listed from /proc: " + err.Error()
			return
		}
		if err != nil {
			s.bpfWhy += "; descriptors listed from /proc: " + err.Error()
			s.notef("the BPF task_file iterator failed, descriptors listed from /proc instead: %v", err)
			return
		}
	}
	s.bpf.files = files
	for _, n := range s.nss {
		n.files = true
	}
	for _, p := range s.procs {
		l, ok := files[p.PID]
		if !ok {
			p.ns.walk = true
		}
		for _, f := range l {
			if !f.full {
				p.ns.walk = true
				break
			}
		}
	}
}

// bpfFailed records a BPF path that should have worked and did not: the
// scan goes on with pidfd_getfd and says so even without --explain-source.
func (s *scan) bpfFailed(err error) {
	s.bpfWhy = err.Error()
	s.notef("BPF iterators could not be used, keepalive values read with pidfd_getfd instead: %v", err)
}

// readers are the two programs, loaded by the first scan that may and
// kept for the life of the process: the exporter scans every interval, one
// namespace at a time, and loading needs the kernel's BTF decoded (tens of
// ms, ~12 MB), which is released once they are loaded. They are attached
// to nothing but iterator links held by kadiag's own descriptors: they go
// when kadiag exits, however it exits.
var readers struct {
	sync.Mutex
	loaded bool
	loadedReaders
}

type loadedReaders struct {
	files              *bpf.FilesReader
	availErr, filesErr error
}

func loadReaders() loadedReaders {
	readers.Lock()
	defer readers.Unlock()
	if readers.loaded {
		return readers.loadedReaders
	}
	readers.loaded = true
	r := &readers.loadedReaders
	if r.availErr = bpf.ReadAvailable(); r.availErr != nil {
		return *r
	}
	defer bpf.ReleaseBTF()
	r.files, r.filesErr = bpf.NewFilesReader()
	return *r
}

// tcpReader is the iter/tcp program, loaded by the first scan that has a
// namespace to walk and kept, like the task_file program.
var tcpReader struct {
	sync.Mutex
	loaded bool
	r      *bpf.TCPReader
	err    error
}

func loadTCP() (*bpf.TCPReader, error) {
	tcpReader.Lock()
	defer tcpReader.Unlock()
	if !tcpReader.loaded {
		tcpReader.loaded = true
		defer bpf.ReleaseBTF()
		tcpReader.r, tcpReader.err = bpf.NewTCPReader()
	}
	return tcpReader.r, tcpReader.err
}

// closeBPF adds the --explain-source note (the programs stay loaded).
func (s *scan) closeBPF() {
	for _, n := range s.nss {
		if n.err == nil && n.bpfErr != nil {
			s.notef("namespace %s: BPF iterator failed, keepalive values read with pidfd_getfd instead: %v", n.id, n.bpfErr)
		}
	}
	if !s.o.ExplainSource {
		return
	}
	var c [4]int // bpf, getsockopt, inferred, unknown
	for _, p := range s.procs {
		if p.gone.Load() {
			continue
		}
		for _, sk := range p.Sockets {
			switch sk.Keepalive.Source {
			case BPF:
				c[0]++
			case Exact:
				c[1]++
			case Inferred:
				c[2]++
			default:
				c[3]++
			}
		}
	}
	path := "pidfd_getfd + getsockopt (needs root or CAP_SYS_PTRACE), BPF iterators not used: " + s.bpfWhy
	if s.bpf != nil {
		walked := 0
		for _, n := range s.nss {
			if n.walk && n.bpfRead {
				walked++
			}
		}
		how := "iter/task_file reads each socket through its descriptor"
		if s.bpf.files == nil {
			how = "iter/tcp walks each namespace"
		} else if walked > 0 {
			ns := "namespaces"
			if walked == 1 {
				ns = "namespace"
			}
			how += fmt.Sprintf(", iter/tcp walked %d %s for sockets the descriptors could not give", walked, ns)
		}
		path = "BPF iterators (" + how + "; " + s.bpfWhy + "), pidfd_getfd + getsockopt for sockets they cannot read"
	}
	if s.o.NoExact {
		path = "kernel timers only (" + s.bpfWhy + ")"
	}
	note := fmt.Sprintf("source: %s; sockets read: %d bpf, %d getsockopt, %d inferred, %d unknown", path, c[0], c[1], c[2], c[3])
	if s.bpf != nil {
		if n := s.bpf.fellBack.Load(); n > 0 {
			note += fmt.Sprintf("; %d MPTCP sockets whose subflows disagree were read with getsockopt", n)
		}
	}
	s.notef("%s", note)
}

// loadBPF reads the namespace's sockets with the iter/tcp program while its
// handle is still open, and fills both the exact values and what the
// inet_diag dump would give (state, addresses, timer, queues, idle clocks),
// so that the namespace needs no dump. It returns false, leaving the
// namespace to the dump and its sockets to pidfd_getfd, when the iterator
// does not run (not in use, or a failure that the dump then reports).
func (n *namespace) loadBPF(ns netns.NsHandle) bool {
	if n.files && !n.walk {
		// The descriptor walk read every socket its processes hold.
		n.bpfRead = true
		return true
	}
	if n.tcp == nil {
		return false
	}
	n.sockets = map[uint64]diagEntry{}
	err := n.tcp.ReadEach(ns, n.same, func(s *bpf.TCPSocket) {
		e := diagOf(s)
		e.bpf, e.hasBPF = bpfValuesOf(s), true
		if old, seen := n.sockets[s.Inode]; seen {
			// Several subflows of one MPTCP socket: exact only if they
			// agree. The first subflow's values stay, the last one's diag.
			v := e.bpf
			e.bpf = old.bpf
			if old.bpf.values() != v.values() {
				e.bpf.ambiguous = true
			}
		}
		n.sockets[s.Inode] = e
	})
	if err != nil {
		n.bpfErr = err
		n.sockets = nil
		return false
	}
	n.bpfRead = true
	return true
}

// rereadBPF walks a namespace again when one of its processes holds a
// socket its walk did not return. The kernel resumes a walk split over
// several reads by position in a hash bucket that other namespaces' sockets
// share, so churn there can make a walk miss a socket (where an inet_diag
// dump would say it was interrupted). Sockets the process holds in other
// namespaces cost one walk more, and stay missing for foreign to find.
func (s *scan) rereadBPF() {
	if s.bpf == nil {
		return
	}
	todo := map[*namespace]bool{}
	for _, p := range s.procs {
		n := p.ns
		if !n.bpfRead || todo[n] {
			continue
		}
		for _, f := range p.fds {
			if f.full {
				continue
			}
			if _, ok := n.sockets[f.inode]; !ok {
				todo[n] = true
				break
			}
		}
	}
	nss := make([]*namespace, 0, len(todo))
	for n := range todo {
		nss = append(nss, n)
	}
	parallel.For(len(nss), func(i int) { nss[i].rereadBPF() })
}

func (n *namespace) rereadBPF() {
	ns := netns.None()
	if !n.same {
		h, err := openNetns(n.path)
		if err != nil {
			return // gone since: its processes are too
		}
		defer h.Close()
		ns = h
	}
	n.tcp.ReadEach(ns, n.same, func(s *bpf.TCPSocket) {
		if _, ok := n.sockets[s.Inode]; ok {
			return
		}
		e := diagOf(s)
		e.bpf, e.hasBPF = bpfValuesOf(s), true
		n.sockets[s.Inode] = e
	})
}

var fdScratch = sync.Pool{New: func() any { return new([]fdSocket) }}

// fdOf is a descriptor as the task_file walk read it.
func fdOf(f *bpf.FileSocket) fdSocket {
	fd := fdSocket{fd: f.FD, inode: f.Inode, netns: f.Netns, full: f.Full}
	if f.Full {
		fd.e = diagOf(&f.TCP)
		fd.e.bpf, fd.e.hasBPF = bpfValuesOf(&f.TCP), true
	}
	return fd
}

// diagOf is what inet_diag would have answered for the socket.
func diagOf(s *bpf.TCPSocket) diagEntry {
	e := diagEntry{
		family:       uint8(s.Family),
		state:        s.State,
		timer:        s.Timer,
		retrans:      s.TimerRetrans,
		hasInfo:      true,
		mptcp:        s.Protocol == bpf.IPProtoMPTCP,
		sport:        s.Local.Port(),
		dport:        s.Remote.Port(),
		expires:      s.TimerExpiresMs,
		rqueue:       s.RecvQ,
		wqueue:       s.SendQ,
		uid:          s.UID,
		inode:        uint32(s.Inode),
		lastDataRecv: s.LastDataRecvMs,
		lastAckRecv:  s.LastAckRecvMs,
	}
	if s.Family == unix.AF_INET6 {
		e.src, e.dst = s.Local.Addr().As16(), s.Remote.Addr().As16()
	} else {
		a, b := s.Local.Addr().As4(), s.Remote.Addr().As4()
		copy(e.src[:], a[:])
		copy(e.dst[:], b[:])
	}
	return e
}

// bpfSocket is what a scan keeps of the iter/tcp program's read of a
// socket, the rest going into the namespace's diagEntry: 16 bytes, so that
// a namespace of 100,000 sockets stays within a few MB.
type bpfSocket struct {
	idle, intvl int32
	userTimeout uint32
	count       uint8
	keepalive   bool
	mptcp       bool
	ambiguous   bool // MPTCP subflows with different values
}

func bpfValuesOf(s *bpf.TCPSocket) bpfSocket {
	return bpfSocket{
		keepalive:   s.Keepalive,
		idle:        int32(s.IdleS),
		intvl:       int32(s.IntervalS),
		count:       uint8(s.Count),
		userTimeout: uint32(s.UserTimeoutMs),
		mptcp:       s.Protocol == bpf.IPProtoMPTCP,
	}
}

func (b bpfSocket) values() bpfSocket {
	b.ambiguous = false
	return b
}

// setBPF fills sk's keepalive from the BPF read, if the namespace has one
// for the inode; false leaves the socket to the other paths.
func (s *scan) setBPF(n *namespace, sk *Socket, m *diagEntry) bool {
	if s.bpf == nil || !n.bpfRead || !m.hasBPF {
		return false
	}
	b := m.bpf
	if b.ambiguous {
		s.bpf.fellBack.Add(1)
		return false
	}
	sk.Keepalive = Keepalive{
		Enabled:                b.keepalive,
		IdleS:                  int(b.idle),
		IntervalS:              int(b.intvl),
		Count:                  int(b.count),
		UserTimeoutMs:          int(b.userTimeout),
		UserTimeoutUnsupported: b.mptcp,
		Source:                 BPF,
	}
	if b.mptcp {
		sk.Protocol = "mptcp"
		sk.Keepalive.UserTimeoutMs = 0
	}
	sk.setTimer(m)
	s.bpf.read.Add(1)
	return true
}

// bpfFDs returns the process's socket descriptors from the task_file
// program; ok false means the BPF path does not list them (use /proc).
func (s *scan) bpfFDs(pid int) (_ []fdSocket, ok bool, _ error) {
	if s.bpf == nil || s.bpf.files == nil {
		return nil, false, nil
	}
	l, ok := s.bpf.files[pid]
	return l, ok, s.bpf.fileErrs[pid]
}

// hasInferred reports whether any socket of the process ended up without
// exact values, so that notes about missing privilege apply to it.
func (p *proc) hasInferred() bool {
	for _, sk := range p.Sockets {
		if !sk.Keepalive.Source.IsExact() {
			return true
		}
	}
	return false
}
