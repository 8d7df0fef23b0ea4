package inspect

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/kadiag/kadiag/internal/bpf"
	"github.com/kadiag/kadiag/internal/parallel"
	kproc "github.com/kadiag/kadiag/internal/proc"
	"github.com/kadiag/kadiag/internal/sockfd"
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
			return nil, kproc.Errorf(pid, "%w (pids are positive)", ErrNoProcess)
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
		return Process{}, kproc.Errorf(pid, "%w (it exited during the scan)", ErrNoProcess)
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
		hint := privHint("CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and CAP_SYS_ADMIN")
		if bpf.Missing("open other processes' namespaces", unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH, unix.CAP_SYS_ADMIN) == nil {
			// Not a matter of capabilities: say so rather than ask for them.
			hint = "refused although kadiag holds CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and CAP_SYS_ADMIN: a security module, or processes of a user namespace above kadiag's"
		}
		s.notef("%d processes skipped: their namespaces cannot be read (%s)", denied, hint)
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
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrNetns, path, err)
	}
	s := newScan(o)
	// load dumps through the handle opened here and closes it.
	n := &namespace{id: fmt.Sprintf("net:[%d]", st.Ino), ino: st.Ino, path: path, same: st.Ino == selfNetns(), h: h}
	n.load()
	if n.err != nil {
		return nil, n.err
	}
	if n.interrupted {
		s.notef("the socket dump of %s was interrupted by concurrent changes three times; some sockets may be missing", n.id)
	}
	p := Process{Netns: n.id, NetnsPath: path, Sysctl: n.sysctl, Sockets: make([]Socket, 0, len(n.sockets))}
	for _, e := range n.sockets {
		sk := newSocket(-1, &e)
		sk.setInferred(&e, n.sysctl)
		p.Sockets = append(p.Sockets, sk)
	}
	sort.Slice(p.Sockets, func(i, j int) bool { return p.Sockets[i].Inode < p.Sockets[j].Inode })
	s.procs = []*proc{{Process: p, pfd: -1}}
	s.notef("--netns maps no processes, so keepalive values are inferred from kernel timers (use --pid or --all for exact values: they need root or CAP_SYS_PTRACE)")
	return s.report(), nil
}

// proc is a process being scanned.
type proc struct {
	Process
	ns  *namespace
	fds []fdSocket

	pfd     pidfd
	exact   atomic.Bool // options are still read with getsockopt
	denied  atomic.Bool // duplicating descriptors was refused
	gone    atomic.Bool
	emitted bool     // handed to Options.Each
	slots   []Socket // one per fd; FD -1 marks a slot left empty

	mu      sync.Mutex
	missing []fdSocket // sockets not in the namespace's dump, checked by foreign
	// cgroupV1 says why descriptors must not be duplicated (net_cls or
	// net_prio v1: pidfd_getfd would rewrite the sockets' classid), or "".
	cgroupV1 string
}

// scan collects processes, then loads their namespaces and sockets in
// parallel: one goroutine per CPU, each namespace dumped once.
type scan struct {
	o       Options
	procs   []*proc
	nss     map[uint64]*namespace
	selfIno uint64
	cgroups *cgroupGuard // nil unless a net_cls/net_prio v1 hierarchy is mounted
	bpf     *bpfPath     // nil unless the BPF iterators read (bpfread.go)
	summary Summary      // verdict counts of the sockets judged so far
	bpfWhy  string       // why they do or do not

	mu    sync.Mutex
	notes []string
}

func newScan(o Options) *scan {
	if o.MaxIdle <= 0 {
		o.MaxIdle = middlebox.DefaultIdle
	}
	s := &scan{o: o, nss: map[uint64]*namespace{}, selfIno: selfNetns()}
	if !o.NoExact {
		s.cgroups = newCgroupGuard(procRoot)
	}
	return s
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
					return kproc.Errorf(pid, "%w", ErrNoProcess)
				}
				return err
			}
		}
		s.nss[ino] = n
	}
	s.procs = append(s.procs, &proc{Process: Process{PID: pid, Comm: c, Netns: id}, ns: n, pfd: -1})
	return nil
}

// testHookAfterListing lets a test end a process between the listing of its
// descriptors and their duplication.
var testHookAfterListing func()

// chunk is how many descriptors one task joins: small enough to spread one
// big process over every CPU, big enough to keep scheduling cheap.
const chunk = 1024

// run loads namespaces and descriptors, then joins them. With explicit
// pids, errors other than a process exiting fail the scan.
func (s *scan) run(explicit bool) error {
	s.openBPF()
	defer s.closeBPF()
	nss := make([]*namespace, 0, len(s.nss))
	for _, n := range s.nss {
		nss = append(nss, n)
	}
	// Dumps and descriptor listings run side by side. A socket opened in
	// between is missing from the dump and left out; one closed in between
	// is missing from the listing: either way only live sockets are shown.
	fdErrs := make([]error, len(s.procs))
	parallel.For(len(nss)+len(s.procs), func(i int) {
		if i < len(nss) {
			nss[i].load()
			return
		}
		i -= len(nss)
		p := s.procs[i]
		if fds, ok, err := s.bpfFDs(p.PID); ok {
			p.fds, fdErrs[i] = fds, err
			return
		}
		p.fds, fdErrs[i] = socketFDs(p.PID, nil)
	})
	s.rereadBPF()
	exited := 0
	if testHookAfterListing != nil {
		testHookAfterListing()
	}
	for i, p := range s.procs {
		err := fdErrs[i]
		if err == nil {
			err = p.ns.err
		}
		switch {
		case err == nil:
		case errors.Is(err, ErrNoProcess):
			p.gone.Store(true)
			if explicit {
				s.notef("pid %d exited during the scan; skipped", p.PID)
			}
			exited++
		case explicit:
			return err
		default:
			p.gone.Store(true)
		}
	}
	if !explicit {
		for _, n := range nss {
			if n.err != nil && !errors.Is(n.err, ErrNoProcess) {
				s.notef("namespace %s skipped: %v", n.id, n.err)
			}
		}
	}
	for _, n := range nss {
		if n.interrupted {
			s.notef("the socket dump of %s was interrupted by concurrent changes three times; some sockets may be missing", n.id)
		}
	}
	inferred := 0
	if s.o.Each == nil {
		s.read(s.procs, explicit, &exited, &inferred)
	} else {
		// Batches of about batchFDs descriptors: enough to keep every CPU
		// busy, few enough that their sockets stay a few MB.
		for lo := 0; lo < len(s.procs); {
			hi, n := lo, 0
			for hi < len(s.procs) && (hi == lo || n+len(s.procs[hi].fds) <= batchFDs) {
				n += len(s.procs[hi].fds)
				hi++
			}
			batch := s.procs[lo:hi]
			s.read(batch, explicit, &exited, &inferred)
			s.emit(batch)
			lo = hi
		}
	}
	if inferred > 0 {
		hint := "run 'sudo kadiag sockets ...' for exact values"
		if kproc.IsRoot() {
			hint = privHint("CAP_SYS_PTRACE")
		}
		s.notef("keepalive values of %d processes are inferred from kernel timers: duplicating their sockets (pidfd_getfd, Linux 5.6+) needs root or CAP_SYS_PTRACE (%s)", inferred, hint)
	}
	// Host-wide, processes come and go all the time: one line, not one each.
	if !explicit && exited > 0 {
		s.notef("%d processes exited during the scan; skipped", exited)
	}
	return nil
}

// batchFDs is about how many descriptors a scan with Options.Each reads
// before handing their processes over.
const batchFDs = 8192

// read joins the processes' descriptors with their namespaces' sockets and
// reads the options the BPF walk did not give, counting processes that
// exited and those whose values are inferred.
func (s *scan) read(ps []*proc, explicit bool, exited, inferred *int) {
	type task struct {
		p      *proc
		lo, hi int
	}
	var tasks []task
	for _, p := range ps {
		p.Sysctl = p.ns.sysctl
		if p.gone.Load() || len(p.fds) == 0 {
			continue
		}
		if !s.prepare(p) {
			if explicit {
				s.notef("pid %d exited during the scan; skipped", p.PID)
			}
			*exited++
			continue
		}
		for lo := 0; lo < len(p.fds); lo += chunk {
			tasks = append(tasks, task{p, lo, min(lo+chunk, len(p.fds))})
		}
	}
	parallel.For(len(tasks), func(i int) { s.join(tasks[i].p, tasks[i].lo, tasks[i].hi) })
	s.foreign(ps)
	for _, p := range ps {
		if p.pfd >= 0 {
			// Older kernels answer pidfd_getfd on an exiting process with
			// EBADF, as for a closed descriptor, rather than ESRCH.
			if p.pfd.exited() {
				p.gone.Store(true)
			}
			p.pfd.close()
		}
		if p.gone.Load() {
			continue
		}
		p.finish()
		if p.denied.Load() && p.hasInferred() {
			*inferred++
		}
		if p.cgroupV1 != "" && p.hasInferred() {
			s.notef("pid %d: keepalive values inferred from kernel timers, not read exactly: %s, and duplicating its sockets (pidfd_getfd) would rewrite their net_cls classid and net_prio index to kadiag's (cgroup v1); run kadiag in the same net_cls/net_prio cgroups for exact values (see docs/privileges.md)", p.PID, p.cgroupV1)
		}
	}
	for _, p := range ps {
		if p.gone.Load() && len(p.slots) > 0 {
			if explicit {
				s.notef("pid %d exited during the scan; skipped", p.PID)
			}
			*exited++
		}
	}
}

// emit judges a batch's processes, hands them to Options.Each and lets
// their sockets go.
func (s *scan) emit(ps []*proc) {
	for _, p := range ps {
		if p.gone.Load() {
			continue
		}
		s.judge(p)
		if p.Sockets == nil {
			p.Sockets = []Socket{}
		}
		s.o.Each(p.Process)
		p.Sockets, p.fds, p.emitted = nil, nil, true
	}
}

// judge sets each socket's verdict and counts it in the scan's summary.
func (s *scan) judge(p *proc) {
	for i := range p.Sockets {
		sk := &p.Sockets[i]
		sk.Verdict, sk.Reason = Judge(sk, s.o.MaxIdle)
		sk.DeadPeerS = sk.Keepalive.deadPeer()
		s.summary.count(sk.Verdict)
	}
}

// prepare opens the process's pidfd, unless exact values are not wanted or
// not allowed. It returns false if the process is gone.
func (s *scan) prepare(p *proc) bool {
	p.slots = make([]Socket, len(p.fds))
	p.pfd = -1
	if s.o.NoExact {
		return true
	}
	if why := s.cgroups.blocks(p.PID); why != "" {
		p.cgroupV1 = why
		return true
	}
	pfd, err := openPidfd(p.PID)
	switch {
	case err == nil:
		p.pfd = pfd
		p.exact.Store(true)
	case errors.Is(err, unix.ESRCH):
		p.gone.Store(true)
		p.slots = nil
		return false
	default:
		p.denied.Store(true)
	}
	return true
}

// join matches descriptors lo..hi of a process with its namespace's dump and
// reads their exact options through the pidfd where allowed.
func (s *scan) join(p *proc, lo, hi int) {
	for i := lo; i < hi; i++ {
		if p.gone.Load() {
			return
		}
		f := &p.fds[i]
		sk := &p.slots[i]
		sk.FD = -1
		e, ok := &f.e, f.full
		if !ok {
			var m diagEntry
			m, ok = p.ns.sockets[f.inode]
			e = &m
		}
		if !ok {
			// Not TCP, closed since the listing, or a socket of another
			// namespace: only its duplicate can tell (foreign).
			if p.exact.Load() {
				p.mu.Lock()
				p.missing = append(p.missing, *f)
				p.mu.Unlock()
			}
			continue
		}
		*sk = newSocket(f.fd, e)
		if f.full && uint64(f.netns) != p.ns.ino {
			sk.Netns = fmt.Sprintf("net:[%d]", f.netns)
		}
		if s.setBPF(p.ns, sk, e) {
			continue
		}
		if !p.exact.Load() {
			sk.setInferred(e, p.ns.sysctl)
			continue
		}
		if s.o.beforeDup != nil {
			s.o.beforeDup(p.PID, f.fd)
		}
		o, err := p.pfd.read(f.fd, f.inode)
		switch {
		case err == nil:
			sk.setExact(o, e)
		case errors.Is(err, sockfd.ErrReused):
			sk.FD = -1
			s.notef("pid %d %v; skipped", p.PID, err)
		case errors.Is(err, unix.ESRCH):
			p.gone.Store(true)
			return
		case errors.Is(err, unix.EBADF):
			sk.FD = -1 // closed since the listing
		case denied(err):
			p.exact.Store(false)
			p.denied.Store(true)
			sk.setInferred(e, p.ns.sysctl)
		default:
			sk.setInferred(e, p.ns.sysctl)
			sk.Reason = fmt.Sprintf("getsockopt: %v; values inferred from kernel timers", err)
		}
	}
}

// finish keeps the filled slots, in descriptor order.
func (p *proc) finish() {
	out := p.slots[:0]
	for _, sk := range p.slots {
		if sk.FD >= 0 {
			out = append(out, sk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FD < out[j].FD })
	p.Sockets = out
	p.slots = nil
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
		if p.gone.Load() || p.emitted {
			continue
		}
		s.judge(p)
		if p.Sockets == nil {
			p.Sockets = []Socket{}
		}
		r.Processes = append(r.Processes, p.Process)
	}
	r.Summary = s.summary
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
	case Dead:
		s.Dead++
	}
}
