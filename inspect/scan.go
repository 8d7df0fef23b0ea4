package inspect

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/kadiag/kadiag/middlebox"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ScanPIDs reads the TCP sockets of the given processes. A pid that does not
// exist, or whose descriptors or namespace the caller may not read, is an
// error; a pid that exits during the scan is skipped with a note.
func ScanPIDs(pids []int, o Options) (*Report, error) {
	s := newScan(o)
	seen := map[int]bool{}
	for _, pid := range pids {
		if pid <= 0 {
			return nil, fmt.Errorf("pid %d: %w (pids are positive)", pid, ErrNoProcess)
		}
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if err := s.addProcess(pid); err != nil {
			return nil, err
		}
	}
	if err := s.run(true); err != nil {
		return nil, err
	}
	return s.report(), nil
}

// PID returns the TCP sockets of one process with their keepalive values
// (exact where privilege allows, else inferred; see Keepalive.Source).
func PID(pid int, o Options) (Process, error) {
	r, err := ScanPIDs([]int{pid}, o)
	if err != nil {
		return Process{}, err
	}
	if len(r.Processes) == 0 {
		return Process{}, fmt.Errorf("pid %d: %w (it exited during the scan)", pid, ErrNoProcess)
	}
	return r.Processes[0], nil
}

// ScanAll reads the TCP sockets of every process on the host, one inet_diag
// dump per network namespace. Processes without TCP sockets are left out;
// processes and namespaces the caller may not read are skipped and counted
// in a note.
func ScanAll(o Options) (*Report, error) {
	pids, err := allPIDs()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	s := newScan(o)
	self := unix.Getpid()
	denied := 0
	for _, pid := range pids {
		if pid == self {
			continue
		}
		if err := s.addProcess(pid); err != nil {
			if errors.Is(err, ErrPermission) {
				denied++
			}
			continue
		}
	}
	if denied > 0 {
		s.notef("%d processes skipped: their namespaces cannot be read (run as root)", denied)
	}
	if err := s.run(false); err != nil {
		return nil, err
	}
	r := s.report()
	kept := r.Processes[:0]
	for _, p := range r.Processes {
		if len(p.Sockets) > 0 {
			kept = append(kept, p)
		}
	}
	r.Processes = kept
	return r, nil
}

// ScanNetns reads every TCP socket of a network namespace given by a file
// such as /proc/PID/ns/net or /run/netns/NAME. Without a process to
// duplicate descriptors from, keepalive values are inferred from timers.
func ScanNetns(path string, o Options) (*Report, error) {
	h, err := openNetns(path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	err = unix.Fstat(int(h), &st)
	h.Close()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrNetns, path, err)
	}
	s := newScan(o)
	n := &namespace{id: fmt.Sprintf("net:[%d]", st.Ino), ino: st.Ino, path: path, same: st.Ino == selfNetns(), h: netns.None()}
	n.load()
	if n.err != nil {
		return nil, n.err
	}
	p := Process{Netns: n.id, NetnsPath: path, Sysctl: n.sysctl, Sockets: make([]Socket, 0, len(n.sockets))}
	for _, e := range n.sockets {
		m := e.socket()
		sk := newSocket(-1, &e)
		sk.setInferred(&m, n.sysctl)
		p.Sockets = append(p.Sockets, sk)
	}
	sort.Slice(p.Sockets, func(i, j int) bool { return p.Sockets[i].Inode < p.Sockets[j].Inode })
	s.procs = []*proc{{Process: p}}
	s.notef("--netns maps no processes, so keepalive values are inferred from kernel timers (use --pid or --all as root for exact values)")
	return s.report(), nil
}

// proc is a process being scanned.
type proc struct {
	Process
	ns   *namespace
	fds  []fdSocket
	gone bool
}

// scan collects processes, then loads their namespaces and sockets in
// parallel: one goroutine per CPU, each namespace dumped once.
type scan struct {
	o       Options
	procs   []*proc
	nss     map[uint64]*namespace
	selfIno uint64

	mu       sync.Mutex
	notes    []string
	inferred int
}

func newScan(o Options) *scan {
	if o.MaxIdle <= 0 {
		o.MaxIdle = middlebox.DefaultIdle
	}
	return &scan{o: o, nss: map[uint64]*namespace{}, selfIno: selfNetns()}
}

func (s *scan) notef(format string, args ...any) {
	s.mu.Lock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *scan) addProcess(pid int) error {
	c, err := comm(pid)
	if err != nil {
		return err
	}
	id, ino, err := netnsID(pid)
	if err != nil {
		return err
	}
	n := s.nss[ino]
	if n == nil {
		n = &namespace{id: id, ino: ino, path: fmt.Sprintf("%s/%d/ns/net", procRoot, pid), same: ino == s.selfIno, h: netns.None()}
		if !n.same {
			if n.h, err = openNetns(n.path); err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
					return fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
				}
				return err
			}
		}
		s.nss[ino] = n
	}
	s.procs = append(s.procs, &proc{Process: Process{PID: pid, Comm: c, Netns: id}, ns: n})
	return nil
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// run loads namespaces and descriptors, then joins them. With explicit
// pids, errors other than a process exiting fail the scan.
func (s *scan) run(explicit bool) error {
	nss := make([]*namespace, 0, len(s.nss))
	for _, n := range s.nss {
		nss = append(nss, n)
	}
	// Descriptors are listed first and namespaces dumped after, so a socket
	// that appears in a listing is in the dump unless it closed meanwhile.
	fdErrs := make([]error, len(s.procs))
	parallel(len(s.procs), func(i int) {
		p := s.procs[i]
		p.fds, fdErrs[i] = socketFDs(p.PID, nil)
	})
	parallel(len(nss), func(i int) { nss[i].load() })
	for i, p := range s.procs {
		err := fdErrs[i]
		if err == nil {
			err = p.ns.err
		}
		switch {
		case err == nil:
		case errors.Is(err, ErrNoProcess):
			p.gone = true
			if explicit {
				s.notef("pid %d exited during the scan; skipped", p.PID)
			}
		case explicit:
			return err
		default:
			p.gone = true
		}
	}
	if !explicit {
		for _, n := range nss {
			if n.err != nil && !errors.Is(n.err, ErrNoProcess) {
				s.notef("namespace %s skipped: %v", n.id, n.err)
			}
		}
	}
	parallel(len(s.procs), func(i int) {
		if p := s.procs[i]; !p.gone {
			s.join(p)
		}
	})
	if s.inferred > 0 {
		s.notef("keepalive values of %d processes are inferred from kernel timers: duplicating their sockets needs root or CAP_SYS_PTRACE (run 'sudo kadiag sockets ...' for exact values)", s.inferred)
	}
	return nil
}

// join matches a process's socket descriptors with its namespace's dump and
// reads exact options through a pidfd where allowed.
func (s *scan) join(p *proc) {
	p.Sysctl = p.ns.sysctl
	p.Sockets = make([]Socket, 0, len(p.fds))
	var pfd pidfd = -1
	exact := !s.o.NoExact
	if exact {
		var err error
		pfd, err = openPidfd(p.PID)
		switch {
		case err == nil:
			defer pfd.close()
		case errors.Is(err, unix.ESRCH):
			p.gone = true
			s.notef("pid %d exited during the scan; skipped", p.PID)
			return
		default:
			exact = false
		}
	}
	deniedOnce := false
	for _, f := range p.fds {
		e, ok := p.ns.sockets[f.inode]
		if !ok {
			continue // not TCP, or closed since the listing
		}
		r := e.socket()
		sk := newSocket(f.fd, &e)
		if exact {
			o, err := pfd.read(f.fd)
			switch {
			case err == nil:
				sk.setExact(o, &r)
			case errors.Is(err, unix.ESRCH):
				p.gone = true
				s.notef("pid %d exited during the scan; skipped", p.PID)
				return
			case errors.Is(err, unix.EBADF):
				continue // closed since the listing
			case denied(err):
				exact, deniedOnce = false, true
				sk.setInferred(&r, p.ns.sysctl)
			default:
				sk.setInferred(&r, p.ns.sysctl)
			}
		} else {
			if !s.o.NoExact {
				deniedOnce = true
			}
			sk.setInferred(&r, p.ns.sysctl)
		}
		p.Sockets = append(p.Sockets, sk)
	}
	if deniedOnce {
		s.mu.Lock()
		s.inferred++
		s.mu.Unlock()
	}
	sort.Slice(p.Sockets, func(i, j int) bool { return p.Sockets[i].FD < p.Sockets[j].FD })
}

// report judges every socket and assembles the result.
func (s *scan) report() *Report {
	r := &Report{
		Schema:    Schema,
		MaxIdleS:  int(s.o.MaxIdle.Seconds()),
		Strict:    s.o.Strict,
		Processes: make([]Process, 0, len(s.procs)),
		Notes:     s.notes,
	}
	for _, p := range s.procs {
		if p.gone {
			continue
		}
		for i := range p.Sockets {
			sk := &p.Sockets[i]
			sk.Verdict, sk.Reason = Judge(sk, s.o.MaxIdle)
			sk.DeadPeerS = sk.Keepalive.deadPeer()
			r.Summary.count(sk.Verdict)
		}
		if p.Sockets == nil {
			p.Sockets = []Socket{}
		}
		r.Processes = append(r.Processes, p.Process)
	}
	return r
}

func (s *Summary) count(v Verdict) {
	if v == Listen {
		s.Listening++
		return
	}
	s.Sockets++
	switch v {
	case OK:
		s.OK++
	case AtRisk:
		s.AtRisk++
	case Local:
		s.Local++
	case Undetermined:
		s.Unknown++
	}
}
