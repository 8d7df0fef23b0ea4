package fix

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/bpf"
	knetns "github.com/kadiag/kadiag/internal/netns"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// viaBPF fixes the process's sockets without duplicating them: it maps the
// descriptors' inodes to socket cookies with inet_diag inside the process's
// network namespace and runs an iter/tcp program there that touches only
// sockets with those cookies. A cookie is never reused while the kernel
// runs, so the program reaches exactly the sockets listed.
func viaBPF(r *Report, pid int, o LiveOptions) error {
	if err := bpf.HaveBTF(); err != nil {
		return fmt.Errorf("--via bpf: %w (use pidfd_getfd instead: run without --via bpf, as root or with CAP_SYS_PTRACE)", err)
	}
	fds, err := socketFDs(pid)
	if err != nil {
		return err
	}
	nsPath := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	ns, err := knetns.Open(nsPath)
	if err != nil {
		return procErr(pid, "open its network namespace", err)
	}
	defer ns.Close()
	nsIno, _ := knetns.HandleIno(ns)
	selfIno, _ := knetns.Ino()
	same := nsIno == selfIno
	diag, err := diagByInode(ns, same)
	if err != nil {
		return err
	}
	var cookies []uint64
	byCookie := map[uint64]int{}
	for _, f := range fds {
		d, ok := diag[f.inode]
		if !ok {
			continue // not a TCP socket of this namespace (MPTCP, UDP, UNIX, another netns)
		}
		s := Socket{FD: f.fd, Inode: f.inode, Cookie: d.cookie, Protocol: "tcp", Family: d.family, State: d.state,
			Local: d.local, Remote: d.remote, Plan: []string{}}
		if ok, why := target(s.State, s.Local, s.Remote, o.AllSockets); !ok {
			s.Action, s.Reason = Skipped, why
		} else {
			cookies = append(cookies, d.cookie)
			byCookie[d.cookie] = len(r.Sockets)
		}
		r.Sockets = append(r.Sockets, s)
	}
	res, err := bpf.SetByCookie(ns, same, cookies, o.bpf(), o.DryRun)
	if err != nil {
		return fmt.Errorf("--via bpf: %w", err)
	}
	// The iterator may show a socket twice (it re-walks a hash bucket that
	// outgrew its batch): the first visit saw the socket before, the last
	// one after.
	met := map[uint64]bool{}
	errs := map[uint64]map[string]error{}
	for _, x := range res {
		i, ok := byCookie[x.Cookie]
		if !ok {
			continue
		}
		s := &r.Sockets[i]
		if !met[x.Cookie] {
			s.Before = fromBPF(x.Before)
		}
		met[x.Cookie] = true
		s.After = fromBPF(x.After)
		for k, v := range x.Errs {
			if errs[x.Cookie] == nil {
				errs[x.Cookie] = map[string]error{}
			}
			errs[x.Cookie][k] = v
		}
	}
	for c, i := range byCookie {
		if !met[c] {
			continue
		}
		s := &r.Sockets[i]
		s.Plan = s.Plan[:0]
		for _, opt := range plan(s.Before, o.Settings, false) {
			s.Plan = append(s.Plan, opt.name)
		}
		switch {
		case len(errs[c]) > 0:
			s.Action, s.Error = Failed, fmt.Sprint(errs[c])
		case len(s.Plan) == 0:
			s.Action, s.Reason = Unchanged, "already keeps these settings or shorter ones"
		case o.DryRun:
			s.Action = WouldChange
		default:
			s.Action = Changed
		}
	}
	for c, i := range byCookie {
		if !met[c] {
			r.Sockets[i].Action, r.Sockets[i].Reason = Gone, "closed before the iterator reached it"
		}
	}
	r.notef("--via bpf reaches TCP sockets of the process's network namespace (%s); MPTCP sockets need pidfd_getfd", r.Process.Netns)
	return nil
}

type diagSocket struct {
	cookie                       uint64
	family, state, local, remote string
}

// diagByInode dumps the namespace's TCP sockets with inet_diag.
func diagByInode(ns vns.NsHandle, same bool) (map[uint64]diagSocket, error) {
	var h *netlink.Handle
	var err error
	if same {
		h, err = netlink.NewHandle(unix.NETLINK_INET_DIAG)
	} else {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("enter the process's network namespace: %w (needs CAP_SYS_ADMIN)", ErrPermission)
		}
		return nil, fmt.Errorf("inet_diag: %w", err)
	}
	defer h.Close()
	out := map[uint64]diagSocket{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		res, err := h.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			if fam == unix.AF_INET6 {
				continue
			}
			return nil, fmt.Errorf("inet_diag dump: %w", err)
		}
		for _, m := range res {
			id := m.ID
			ds := diagSocket{
				cookie: uint64(id.Cookie[0]) | uint64(id.Cookie[1])<<32,
				family: "inet", state: inspect.StateName(m.State),
				local:  addrPort(id.Source, id.SourcePort),
				remote: addrPort(id.Destination, id.DestinationPort),
			}
			if m.Family == unix.AF_INET6 {
				ds.family = "inet6"
			}
			if ds.state == "LISTEN" {
				ds.remote = "*"
			}
			out[uint64(m.INode)] = ds
		}
	}
	return out, nil
}

func addrPort(ip []byte, port uint16) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "*"
	}
	return netip.AddrPortFrom(a.Unmap(), port).String()
}
