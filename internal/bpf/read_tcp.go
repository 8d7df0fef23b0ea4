package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	knetns "github.com/kadiag/kadiag/internal/netns"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IPProtoMPTCP is sk_protocol of a Multipath TCP socket.
const IPProtoMPTCP = 262

// TCPSocket is one full TCP socket (not a request or time-wait socket)
// that has a socket inode, as an iter/tcp program read it from the
// kernel's struct tcp_sock and struct sock: touching nothing, locking
// nothing the socket's users wait for.
type TCPSocket struct {
	Cookie uint64 // bpf_get_socket_cookie: SO_COOKIE, ss -e's sk:
	Inode  uint64 // the socket inode /proc/PID/fd links name
	Family uint16 // AF_INET or AF_INET6
	State  uint8  // kernel TCP state (include/net/tcp_states.h)
	Local  netip.AddrPort
	Remote netip.AddrPort
	UID    uint32 // the socket's owner, as inet_diag reports it
	// Protocol is the protocol of the socket the inode belongs to:
	// IPPROTO_TCP, or IPProtoMPTCP for a subflow of an MPTCP socket (the
	// options then come from the subflow, SO_KEEPALIVE from the MPTCP
	// socket).
	Protocol int
	V6Only   bool // IPV6_V6ONLY (sock_common's skc_ipv6only bitfield)
	// Values are the keepalive options as getsockopt reports them: an
	// option the socket never set reads as its namespace's sysctl.
	Values
	// Timer is the pending timer as inet_diag's idiag_timer names it: 0
	// none, 1 retransmit, 2 keepalive (sk_timer), 4 zero-window probe.
	Timer uint8
	// TimerRetrans is inet_diag's idiag_retrans: retransmits, or
	// unanswered probes for the keepalive and zero-window timers.
	TimerRetrans uint8
	// TimerExpiresMs is inet_diag's idiag_expires: until the timer fires.
	TimerExpiresMs uint32
	// RecvQ and SendQ are inet_diag's idiag_rqueue and idiag_wqueue:
	// unread and unacknowledged bytes, or a listener's accept queue and
	// backlog.
	RecvQ, SendQ uint32
	// LastDataRecvMs and LastAckRecvMs are tcp_info's idle clocks (zero for
	// a listener, as tcp_get_info leaves them).
	LastDataRecvMs, LastAckRecvMs uint32
}

// tcpRecordSize is the size of one record the program writes; the layout
// is tcpRecord's offsets.
const tcpRecordSize = 160

// Offsets within a record.
const (
	recCookie      = 0
	recInode       = 8
	recFamily      = 16
	recSport       = 18 // host order (skc_num)
	recDport       = 20 // network order
	recState       = 22
	recPending     = 23 // icsk_pending
	recSaddr4      = 24
	recDaddr4      = 28
	recSaddr6      = 32
	recDaddr6      = 48
	recKeepTime    = 64 // jiffies, 0: sysctl
	recKeepIntvl   = 68 // jiffies, 0: sysctl
	recUserTimeout = 72 // ms
	recUID         = 76
	recSysTime     = 80 // the namespace's tcp_keepalive_time, jiffies
	recSysIntvl    = 84 // jiffies
	recKeepProbes  = 88 // 0: sysctl
	recSysProbes   = 89
	recKeepOpen    = 90 // SOCK_KEEPOPEN of the inode's socket
	recProbesOut   = 91
	recProtocol    = 92 // sk_protocol of the inode's socket
	recRetransmits = 94
	recKeepTimer   = 95  // sk_timer pending
	recV6Only      = 96  // the raw unit holding skc_ipv6only
	recNow         = 104 // bpf_jiffies64
	recRetransExp  = 112 // icsk_retransmit_timer.expires
	recKeepExp     = 120 // sk_timer.expires
	recLrcvtime    = 128 // icsk_ack.lrcvtime
	recRcvTstamp   = 132
	recRcvNxt      = 136
	recCopiedSeq   = 140
	recWriteSeq    = 144
	recSndUna      = 148
	recAckBacklog  = 152
	recMaxBacklog  = 156
)

// tcpLayout is what the iter/tcp reader needs from the kernel's BTF.
type tcpLayout struct {
	metaOff, seqOff, skOff, uidOff int16
	// From struct tcp_sock.
	family, num, dport, state, saddr4, daddr4, saddr6, daddr6, v6only field
	net, socket, keepTime, keepIntvl, keepProbes, userTimeout         field
	pending, probesOut, retransmits, timerPprev                       field
	retransExp, keepExp, lrcvtime, rcvTstamp, rcvNxt, copiedSeq       field
	writeSeq, sndUna, ackBacklog, maxBacklog                          field
	// From struct socket, struct file, struct inode.
	socketSk, socketFile, fileInode, inodeIno field
	// From struct sock (the inode's socket).
	skFlags, skProtocol field
	// From struct net.
	sysTime, sysIntvl, sysProbes field
	keepOpenBit                  uint64
}

func loadTCPLayout() (*tcpLayout, error) {
	var fs fields
	l := &tcpLayout{}
	l.metaOff = fs.get("bpf_iter__tcp", "meta").off
	l.seqOff = fs.get("bpf_iter_meta", "seq").off
	l.skOff = fs.get("bpf_iter__tcp", "sk_common").off
	l.uidOff = fs.scalar("bpf_iter__tcp", "uid").off
	sk := []string{"inet_conn", "icsk_inet", "sk"}
	skc := append(sk[:3:3], "__sk_common")
	tp := func(path ...string) field { return fs.scalar("tcp_sock", path...) }
	at := func(prefix []string, path ...string) []string {
		return append(prefix[:len(prefix):len(prefix)], path...)
	}
	l.family = tp(at(skc, "skc_family")...)
	l.num = tp(at(skc, "skc_num")...)
	l.dport = tp(at(skc, "skc_dport")...)
	l.state = tp(at(skc, "skc_state")...)
	l.saddr4 = tp(at(skc, "skc_rcv_saddr")...)
	l.daddr4 = tp(at(skc, "skc_daddr")...)
	l.saddr6 = fs.get("tcp_sock", at(skc, "skc_v6_rcv_saddr")...)
	l.daddr6 = fs.get("tcp_sock", at(skc, "skc_v6_daddr")...)
	l.v6only = tp(at(skc, "skc_ipv6only")...)
	l.net = tp(at(skc, "skc_net", "net")...)
	l.socket = tp(at(sk, "sk_socket")...)
	l.timerPprev = tp(at(sk, "sk_timer", "entry", "pprev")...)
	l.keepTime = tp("keepalive_time")
	l.keepIntvl = tp("keepalive_intvl")
	l.keepProbes = tp("keepalive_probes")
	l.userTimeout = tp("inet_conn", "icsk_user_timeout")
	l.pending = tp("inet_conn", "icsk_pending")
	l.probesOut = tp("inet_conn", "icsk_probes_out")
	l.retransmits = tp("inet_conn", "icsk_retransmits")
	l.retransExp = tp("inet_conn", "icsk_retransmit_timer", "expires")
	l.keepExp = tp(at(sk, "sk_timer", "expires")...)
	l.lrcvtime = tp("inet_conn", "icsk_ack", "lrcvtime")
	l.rcvTstamp = tp("rcv_tstamp")
	l.rcvNxt = tp("rcv_nxt")
	l.copiedSeq = tp("copied_seq")
	l.writeSeq = tp("write_seq")
	l.sndUna = tp("snd_una")
	l.ackBacklog = tp(at(sk, "sk_ack_backlog")...)
	l.maxBacklog = tp(at(sk, "sk_max_ack_backlog")...)
	l.socketSk = fs.scalar("socket", "sk")
	l.socketFile = fs.scalar("socket", "file")
	l.fileInode = fs.scalar("file", "f_inode")
	l.inodeIno = fs.scalar("inode", "i_ino")
	l.skFlags = fs.scalar("sock", "__sk_common", "skc_flags")
	l.skProtocol = fs.scalar("sock", "sk_protocol")
	l.sysTime = fs.scalar("net", "ipv4", "sysctl_tcp_keepalive_time")
	l.sysIntvl = fs.scalar("net", "ipv4", "sysctl_tcp_keepalive_intvl")
	l.sysProbes = fs.scalar("net", "ipv4", "sysctl_tcp_keepalive_probes")
	if fs.err != nil {
		return nil, fs.err
	}
	if l.saddr6.bytes != 16 || l.daddr6.bytes != 16 {
		return nil, fmt.Errorf("%w: BTF in6_addr is %d bytes", ErrUnsupported, l.saddr6.bytes)
	}
	bit, err := enumValue("sock_flags", "SOCK_KEEPOPEN")
	if err != nil {
		return nil, err
	}
	l.keepOpenBit = bit
	// Each value lands in a record slot of a fixed width.
	for _, c := range append(append(l.sockSlots(), l.netSlots()...), recordSlot{l.skProtocol, recProtocol, 2}, recordSlot{l.inodeIno, recInode, 8}) {
		if c.f.bytes > c.width {
			return nil, fmt.Errorf("%w: a kernel field is %d bytes, kadiag's record has %d", ErrUnsupported, c.f.bytes, c.width)
		}
	}
	return l, nil
}

// recordSlot is a kernel struct member the record holds: where it lands
// and how wide the record's slot is.
type recordSlot struct {
	f     field
	at    int16
	width int
}

// sockSlots are the struct tcp_sock members the record holds as they are.
func (l *tcpLayout) sockSlots() []recordSlot {
	return []recordSlot{
		{l.family, recFamily, 2}, {l.num, recSport, 2}, {l.dport, recDport, 2}, {l.state, recState, 1},
		{l.pending, recPending, 1}, {l.saddr4, recSaddr4, 4}, {l.daddr4, recDaddr4, 4}, {l.v6only, recV6Only, 8},
		{l.keepTime, recKeepTime, 4}, {l.keepIntvl, recKeepIntvl, 4}, {l.keepProbes, recKeepProbes, 1},
		{l.userTimeout, recUserTimeout, 4}, {l.probesOut, recProbesOut, 1}, {l.retransmits, recRetransmits, 1},
		{l.retransExp, recRetransExp, 8}, {l.keepExp, recKeepExp, 8}, {l.lrcvtime, recLrcvtime, 4},
		{l.rcvTstamp, recRcvTstamp, 4}, {l.rcvNxt, recRcvNxt, 4}, {l.copiedSeq, recCopiedSeq, 4},
		{l.writeSeq, recWriteSeq, 4}, {l.sndUna, recSndUna, 4}, {l.ackBacklog, recAckBacklog, 4},
		{l.maxBacklog, recMaxBacklog, 4},
	}
}

// netSlots are the socket's namespace's keepalive sysctls (struct net).
func (l *tcpLayout) netSlots() []recordSlot {
	return []recordSlot{{l.sysTime, recSysTime, 4}, {l.sysIntvl, recSysIntvl, 4}, {l.sysProbes, recSysProbes, 1}}
}

// copyField loads f from base into R1 and stores it at the record's slot.
func (b *builder) copyField(base asm.Register, f field, rec, slot int16) {
	b.emit(
		asm.LoadMem(asm.R1, base, f.off, f.size),
		asm.StoreMem(asm.RFP, rec+slot, asm.R1, f.size),
	)
}

// tcpReadInstructions writes one record for every full TCP socket of the
// namespace that has an inode. Loads go through BTF pointers (tracing
// programs read them with exception handling: a NULL pointer on the way
// reads as zero).
func tcpReadInstructions(l *tcpLayout) asm.Instructions {
	const rec = -tcpRecordSize
	var b builder
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, l.skOff, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		// Request and time-wait sockets have no options and no inode.
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R8, asm.R0),
		// R9: the struct socket the inode belongs to (for an MPTCP subflow,
		// the MPTCP socket's).
		asm.LoadMem(asm.R9, asm.R8, l.socket.off, asm.DWord),
		asm.JEq.Imm(asm.R9, 0, "out"),
		asm.LoadMem(asm.R1, asm.R9, l.socketFile.off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R1, asm.R1, l.fileInode.off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R1, asm.R1, l.inodeIno.off, l.inodeIno.size),
		asm.JEq.Imm(asm.R1, 0, "out"),
	)
	b.zero(rec, tcpRecordSize)
	b.emit(asm.StoreMem(asm.RFP, rec+recInode, asm.R1, l.inodeIno.size))
	b.emit(
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, rec+recCookie, asm.R0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, l.uidOff, asm.Word),
		asm.StoreMem(asm.RFP, rec+recUID, asm.R1, asm.Word),
	)
	b.tcpFields(l, rec)
	b.seqWrite(l.metaOff, l.seqOff, rec, tcpRecordSize)
	b.exit()
	return b.insns
}

// tcpFields stores a socket's TCP record at rec: R8 holds its struct
// tcp_sock, R9 the struct socket its inode belongs to. The caller stores
// cookie, inode and uid, which the two iterators find in different places.
func (b *builder) tcpFields(l *tcpLayout, rec int16) {
	for _, c := range l.sockSlots() {
		b.copyField(asm.R8, c.f, rec, c.at)
	}
	for i := int16(0); i < 16; i += 8 {
		b.emit(
			asm.LoadMem(asm.R1, asm.R8, l.saddr6.off+i, asm.DWord),
			asm.StoreMem(asm.RFP, rec+recSaddr6+i, asm.R1, asm.DWord),
			asm.LoadMem(asm.R1, asm.R8, l.daddr6.off+i, asm.DWord),
			asm.StoreMem(asm.RFP, rec+recDaddr6+i, asm.R1, asm.DWord),
		)
	}
	net := b.fresh("net")
	b.emit(
		asm.FnJiffies64.Call(),
		asm.StoreMem(asm.RFP, rec+recNow, asm.R0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R8, l.timerPprev.off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, net),
		asm.StoreImm(asm.RFP, rec+recKeepTimer, 1, asm.Byte),
	)
	b.mark(net)
	b.emit(asm.LoadMem(asm.R2, asm.R8, l.net.off, asm.DWord))
	for _, c := range l.netSlots() {
		b.copyField(asm.R2, c.f, rec, c.at)
	}
	// SO_KEEPALIVE and the protocol from the inode's own socket.
	b.emit(asm.LoadMem(asm.R2, asm.R9, l.socketSk.off, asm.DWord))
	b.copyField(asm.R2, l.skProtocol, rec, recProtocol)
	b.emit(
		asm.LoadMem(asm.R1, asm.R2, l.skFlags.off, l.skFlags.size),
		asm.RSh.Imm(asm.R1, int32(l.keepOpenBit)),
		asm.And.Imm(asm.R1, 1),
		asm.StoreMem(asm.RFP, rec+recKeepOpen, asm.R1, asm.Byte),
	)
}

// ReadAvailable reports whether the BPF read path can run: kernel BTF,
// and CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN). The error says what is
// missing (errors.Is ErrNoBTF, ErrCapability).
func ReadAvailable() error {
	if err := HaveBTF(); err != nil {
		return err
	}
	return need("read sockets through BPF iterators", iterCaps...)
}

// TCPReader is a loaded and attached iter/tcp program that reads every
// socket of a namespace. One reader serves any number of namespaces, from
// any number of goroutines.
type TCPReader struct {
	layout *tcpLayout
	prog   *ebpf.Program
	link   *link.Iter
}

// NewTCPReader loads the iter/tcp read program.
func NewTCPReader() (*TCPReader, error) {
	spec, err := kernelSpec()
	if err != nil {
		return nil, err
	}
	if err := need("run a BPF TCP iterator", iterCaps...); err != nil {
		return nil, err
	}
	l, err := loadTCPLayout()
	if err != nil {
		return nil, err
	}
	prog, it, err := loadIter("kadiag_read_tcp", "tcp", tcpReadInstructions(l), "iter/tcp read program", spec)
	if err != nil {
		return nil, err
	}
	return &TCPReader{layout: l, prog: prog, link: it}, nil
}

// Close detaches and unloads the program.
func (r *TCPReader) Close() error {
	err := r.link.Close()
	if perr := r.prog.Close(); err == nil {
		err = perr
	}
	return err
}

// ReadEach calls f for every full TCP socket with an inode of network
// namespace ns (the caller's own when same), as its record arrives, so
// that a namespace of 100,000 sockets costs one 64 KiB buffer, not the
// whole output and a slice of it decoded. The iterator walks the
// namespace of the thread that opens it, so it is opened inside ns
// through internal/netns; f runs on that thread. An MPTCP socket appears
// once per subflow, with the MPTCP socket's inode.
func (r *TCPReader) ReadEach(ns vns.NsHandle, same bool, f func(*TCPSocket)) error {
	run := func() error {
		// HZ turns the kernel's jiffies into getsockopt's seconds; the
		// namespace's sysctls give it (stored in jiffies, shown in seconds).
		sysSecs, err := keepaliveTimeSecs()
		if err != nil {
			return err
		}
		it, err := r.link.Open()
		if err != nil {
			return err
		}
		defer it.Close()
		d := tcpDecoder{l: r.layout, sysSecs: sysSecs}
		left, err := eachRecord(it, tcpRecordSize, func(r []byte) error {
			s, err := d.record(r)
			if err == nil {
				f(&s)
			}
			return err
		})
		if err == nil && left != 0 {
			err = fmt.Errorf("TCP iterator: output ends in %d bytes of a %d-byte record", left, tcpRecordSize)
		}
		return err
	}
	var err error
	if same {
		err = run()
	} else {
		err = knetns.Do(ns, run)
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) && !same {
			if cerr := need("enter a network namespace", unix.CAP_SYS_ADMIN); cerr != nil {
				return cerr
			}
		}
		if errors.Is(err, ErrUnsupported) {
			return err
		}
		return fmt.Errorf("run the TCP iterator: %w", err)
	}
	return nil
}

// keepaliveTimeSecs reads the reading thread's namespace's
// tcp_keepalive_time in seconds. The kernel keeps it in jiffies (the
// records carry that), so the two give HZ, which turns the sockets'
// jiffies into getsockopt's seconds without assuming a CONFIG_HZ.
func keepaliveTimeSecs() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time")
	if err != nil {
		return 0, fmt.Errorf("read tcp_keepalive_time: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: tcp_keepalive_time %q", ErrUnsupported, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// tcpDecoder decodes records; sysSecs is the namespace's
// tcp_keepalive_time in seconds, which with the records' jiffies gives HZ.
type tcpDecoder struct {
	l       *tcpLayout
	sysSecs int
	hz      int
}

func (d *tcpDecoder) record(r []byte) (TCPSocket, error) {
	le := binary.LittleEndian
	l := d.l
	if d.hz == 0 {
		sys := int(le.Uint32(r[recSysTime:]))
		if sys <= 0 || sys%d.sysSecs != 0 {
			return TCPSocket{}, fmt.Errorf("%w: tcp_keepalive_time is %d jiffies and %d s: cannot tell HZ", ErrUnsupported, sys, d.sysSecs)
		}
		d.hz = sys / d.sysSecs
	}
	hz := d.hz
	s := TCPSocket{
		Cookie:       le.Uint64(r[recCookie:]),
		Inode:        le.Uint64(r[recInode:]),
		Family:       le.Uint16(r[recFamily:]),
		State:        r[recState],
		UID:          le.Uint32(r[recUID:]),
		Protocol:     int(le.Uint16(r[recProtocol:])),
		V6Only:       l.v6only.extract(le.Uint64(r[recV6Only:])) != 0,
		TimerRetrans: r[recRetransmits],
	}
	sport := le.Uint16(r[recSport:])
	dport := binary.BigEndian.Uint16(r[recDport:])
	if s.Family == unix.AF_INET6 {
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[recSaddr6:recSaddr6+16])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[recDaddr6:recDaddr6+16])), dport)
	} else {
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[recSaddr4:recSaddr4+4])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[recDaddr4:recDaddr4+4])), dport)
	}
	// getsockopt: keepalive_time_when(tp) / HZ and friends.
	or := func(v, sys uint32) uint32 {
		if v == 0 {
			return sys
		}
		return v
	}
	s.Keepalive = r[recKeepOpen] != 0
	s.IdleS = int(or(le.Uint32(r[recKeepTime:]), le.Uint32(r[recSysTime:]))) / hz
	s.IntervalS = int(or(le.Uint32(r[recKeepIntvl:]), le.Uint32(r[recSysIntvl:]))) / hz
	s.Count = int(or(uint32(r[recKeepProbes]), uint32(r[recSysProbes])))
	s.UserTimeoutMs = int(le.Uint32(r[recUserTimeout:]))
	// inet_diag's choice of timer (inet_sk_diag_fill), its expiry
	// (jiffies_delta_to_msecs) and queues (tcp_diag_get_info), and
	// tcp_info's idle clocks (tcp_get_info), all from jiffies.
	now := le.Uint64(r[recNow:])
	ms := func(j uint64) uint32 { return uint32(j * 1000 / uint64(hz)) }
	until := func(exp uint64) uint32 {
		if d := int64(exp - now); d > 0 {
			return ms(uint64(d))
		}
		return 0
	}
	switch r[recPending] {
	case icskTimeRetrans, icskTimeReoTimeout, icskTimeLossProbe:
		s.Timer, s.TimerExpiresMs = 1, until(le.Uint64(r[recRetransExp:]))
	case icskTimeProbe0:
		s.Timer, s.TimerRetrans, s.TimerExpiresMs = 4, r[recProbesOut], until(le.Uint64(r[recRetransExp:]))
	default:
		if r[recKeepTimer] != 0 {
			s.Timer, s.TimerRetrans, s.TimerExpiresMs = 2, r[recProbesOut], until(le.Uint64(r[recKeepExp:]))
		} else {
			s.TimerRetrans = 0
		}
	}
	if s.State == tcpListen {
		s.RecvQ, s.SendQ = le.Uint32(r[recAckBacklog:]), le.Uint32(r[recMaxBacklog:])
	} else {
		now32 := uint32(now)
		s.RecvQ = uint32(max(int32(le.Uint32(r[recRcvNxt:])-le.Uint32(r[recCopiedSeq:])), 0))
		s.SendQ = le.Uint32(r[recWriteSeq:]) - le.Uint32(r[recSndUna:])
		s.LastDataRecvMs = ms(uint64(now32 - le.Uint32(r[recLrcvtime:])))
		s.LastAckRecvMs = ms(uint64(now32 - le.Uint32(r[recRcvTstamp:])))
	}
	return s, nil
}

// tcpListen is TCP_LISTEN (include/net/tcp_states.h).
const tcpListen = 10

// icsk_pending values (include/net/inet_connection_sock.h).
const (
	icskTimeRetrans    = 1
	icskTimeProbe0     = 3
	icskTimeLossProbe  = 5
	icskTimeReoTimeout = 6
)
