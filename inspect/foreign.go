package inspect

import (
	"fmt"

	"github.com/kadiag/kadiag/internal/parallel"
	"github.com/kadiag/kadiag/internal/sockfd"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A process can hold TCP sockets of other network namespaces than its
// /proc/PID/ns/net: created before or after a setns, or received over a
// UNIX socket. They are absent from its namespace's dump. Where descriptors
// can be duplicated, the duplicate tells its own namespace (SIOCGSKNS);
// that namespace is dumped too and the socket shown with its Netns.

// foreignSocket is a TCP socket of a process found outside its namespace.
type foreignSocket struct {
	fd    fdSocket
	o     options
	netns uint64
}

// classifyMissing duplicates the descriptors of p that were not in its
// namespace's dump and keeps the TCP ones that live elsewhere. Descriptors
// of new namespaces are added to nsfds (the caller closes them).
func (s *scan) classifyMissing(p *proc, nsfds map[uint64]int) (out []foreignSocket, unidentified int) {
	for _, f := range p.missing {
		nfd, err := sockfd.Dup(int(p.pfd), f.fd, f.inode)
		if err != nil {
			continue // closed or reused since the listing
		}
		proto := tcpProtocol(nfd)
		if proto == 0 {
			unix.Close(nfd)
			continue
		}
		o, err := readOptions(nfd)
		o.mptcp = proto == ipprotoMPTCP
		o.netns = sockfd.NetnsIno(nfd)
		switch {
		case err != nil:
		case o.netns == 0:
			unidentified++
		case o.netns == p.ns.ino:
			// Opened after the dump: left out, as any socket opened meanwhile.
		default:
			s.mu.Lock()
			if _, ok := nsfds[o.netns]; !ok {
				if ns, err := sockfd.OpenNetns(nfd); err == nil {
					nsfds[o.netns] = ns
				}
			}
			s.mu.Unlock()
			out = append(out, foreignSocket{fd: f, o: o, netns: o.netns})
		}
		unix.Close(nfd)
	}
	return out, unidentified
}

// tcpProtocol returns SO_PROTOCOL of nfd if it is an inet stream socket of
// TCP or MPTCP, else 0.
func tcpProtocol(nfd int) int {
	dom, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || (dom != unix.AF_INET && dom != unix.AF_INET6) {
		return 0
	}
	typ, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return 0
	}
	proto, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || (proto != unix.IPPROTO_TCP && proto != ipprotoMPTCP) {
		return 0
	}
	return proto
}

// foreign finds the sockets of every process that live in other namespaces,
// dumps those namespaces (once each) and adds the sockets to their process.
func (s *scan) foreign(of []*proc) {
	var ps []*proc
	for _, p := range of {
		if len(p.missing) > 0 && p.pfd >= 0 && !p.gone.Load() {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	nsfds := map[uint64]int{}
	found := make([][]foreignSocket, len(ps))
	unidentified := make([]int, len(ps))
	parallel.For(len(ps), func(i int) { found[i], unidentified[i] = s.classifyMissing(ps[i], nsfds) })
	nss := map[uint64]*namespace{}
	var load []*namespace
	for ino, fd := range nsfds {
		// A namespace read only through descriptors has no table to serve.
		if n, ok := s.nss[ino]; ok && n.err == nil && n.sockets != nil {
			nss[ino] = n // a scanned process lives there: its dump serves
			unix.Close(fd)
			continue
		}
		n := &namespace{id: fmt.Sprintf("net:[%d]", ino), ino: ino, same: ino == s.selfIno, h: netns.NsHandle(fd)}
		if n.same {
			unix.Close(fd)
			n.h = netns.None()
		}
		nss[ino] = n
		load = append(load, n)
	}
	parallel.For(len(load), func(i int) { load[i].load() })
	for i, p := range ps {
		if unidentified[i] > 0 {
			s.notef("pid %d: %d TCP sockets live in another network namespace that cannot be identified (SIOCGSKNS needs CAP_NET_ADMIN there); not shown", p.PID, unidentified[i])
		}
		for _, fs := range found[i] {
			n := nss[fs.netns]
			if n == nil {
				continue
			}
			if n.err != nil {
				s.notef("pid %d fd %d: a socket of network namespace %s, which cannot be dumped: %v; not shown", p.PID, fs.fd.fd, n.id, n.err)
				continue
			}
			e, ok := n.sockets[fs.fd.inode]
			if !ok {
				continue // closed since
			}
			sk := newSocket(fs.fd.fd, &e)
			sk.setExact(fs.o, &e)
			sk.Netns = n.id
			p.slots = append(p.slots, sk)
		}
	}
}
