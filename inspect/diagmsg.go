package inspect

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// diagRequest is an inet_diag_req_v2 asking for every socket of a family and
// protocol, in every state, with tcp_info (INET_DIAG_INFO). A protocol above
// 255 (MPTCP) goes in an INET_DIAG_REQ_PROTOCOL attribute.
type diagRequest struct {
	family   uint8
	protocol int
}

const (
	sizeofNlmsghdr    = 16
	sizeofDiagRequest = 56 // inet_diag_req_v2
	sizeofDiagMsg     = 72 // inet_diag_msg
	inetDiagInfo      = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagReqProto  = 3  // INET_DIAG_REQ_PROTOCOL: u32
	sockDiagByFamily  = 20 // SOCK_DIAG_BY_FAMILY
	// Offsets into struct tcp_info (include/uapi/linux/tcp.h).
	tcpiLastDataRecv = 52
	tcpiLastAckRecv  = 56
)

// message returns the whole netlink request: header, inet_diag_req_v2 and,
// for MPTCP, the protocol attribute.
func (r diagRequest) message(seq uint32) []byte {
	n := sizeofNlmsghdr + sizeofDiagRequest
	if r.protocol > 255 {
		n += 8
	}
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	q := b[sizeofNlmsghdr:]
	q[0] = r.family
	q[1] = uint8(r.protocol)
	q[2] = 1 << (inetDiagInfo - 1)
	ne.PutUint32(q[4:], 0xfff) // all states
	if r.protocol > 255 {
		a := q[sizeofDiagRequest:]
		ne.PutUint16(a[0:], 8)
		ne.PutUint16(a[2:], inetDiagReqProto)
		ne.PutUint32(a[4:], uint32(r.protocol))
	}
	return b
}

// diagEntry is what a scan keeps of one socket's inet_diag answer, by
// value: about 120 bytes, no pointers into the kernel's message.
type diagEntry struct {
	family, state, timer, retrans uint8
	hasInfo                       bool
	mptcp                         bool // the inode is an MPTCP socket's
	// hasBPF says bpf holds the iter/tcp program's read of the socket:
	// kept in the entry, not in a second map per namespace, so that a
	// namespace of 100,000 sockets costs one map insert and one lookup each.
	hasBPF       bool
	sport, dport uint16
	bpf          bpfSocket
	// src and dst are the addresses' 16 bytes (an IPv4 address in the
	// first 4): no pointer, so that the GC need not scan 100,000 entries.
	src, dst                     [16]byte
	expires, rqueue, wqueue, uid uint32
	inode                        uint32
	lastDataRecv, lastAckRecv    uint32
}

// addrs returns the socket's addresses, an IPv4-mapped IPv6 address as
// the IPv4 address it is.
func (e *diagEntry) addrs() (src, dst netip.Addr) {
	if e.family == unix.AF_INET6 {
		return netip.AddrFrom16(e.src).Unmap(), netip.AddrFrom16(e.dst).Unmap()
	}
	return netip.AddrFrom4([4]byte(e.src[:4])), netip.AddrFrom4([4]byte(e.dst[:4]))
}

// decodeDiag decodes one inet_diag_msg and its tcp_info attribute. The
// layout is the kernel's ABI (include/uapi/linux/inet_diag.h): ports in
// network order, everything else in host order.
func decodeDiag(b []byte) (diagEntry, bool) {
	if len(b) < sizeofDiagMsg {
		return diagEntry{}, false
	}
	ne := binary.NativeEndian
	e := diagEntry{
		family:  b[0],
		state:   b[1],
		timer:   b[2],
		retrans: b[3],
		sport:   binary.BigEndian.Uint16(b[4:]),
		dport:   binary.BigEndian.Uint16(b[6:]),
		expires: ne.Uint32(b[52:]),
		rqueue:  ne.Uint32(b[56:]),
		wqueue:  ne.Uint32(b[60:]),
		uid:     ne.Uint32(b[64:]),
		inode:   ne.Uint32(b[68:]),
	}
	if e.family == unix.AF_INET6 {
		e.src, e.dst = [16]byte(b[8:24]), [16]byte(b[24:40])
	} else {
		copy(e.src[:], b[8:12])
		copy(e.dst[:], b[24:28])
	}
	for a := b[sizeofDiagMsg:]; len(a) >= 4; {
		l := int(ne.Uint16(a))
		typ := ne.Uint16(a[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(a) {
			break
		}
		if typ == inetDiagInfo && l-4 >= tcpiLastAckRecv+4 {
			v := a[4:l]
			e.lastDataRecv = ne.Uint32(v[tcpiLastDataRecv:])
			e.lastAckRecv = ne.Uint32(v[tcpiLastAckRecv:])
			e.hasInfo = true
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next >= len(a) {
			break
		}
		a = a[next:]
	}
	return e, true
}
