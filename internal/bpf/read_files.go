package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// FileSocket is one descriptor of a process that refers to an inet stream
// socket (TCP or MPTCP), as an iter/task_file program saw it, with the
// socket itself read through the descriptor's file: one walk over every
// process reads every TCP socket they hold, in every network namespace,
// without walking any namespace's socket hash table.
type FileSocket struct {
	PID   int    // thread group id, in kadiag's pid namespace
	FD    int    // descriptor number in the process
	Inode uint64 // socket inode, as /proc/PID/fd/FD's socket:[inode]
	// Netns is the inode number of the socket's network namespace
	// (net:[Netns]), which need not be the process's.
	Netns uint32
	// Protocol is the socket's: IPPROTO_TCP or IPProtoMPTCP.
	Protocol int
	// Full says TCP holds the socket's read. An MPTCP socket's options
	// live in its subflows, which no descriptor refers to: read them with
	// the namespace's TCPReader.
	Full bool
	TCP  TCPSocket
}

// fileHeaderSize is the part of a record before the TCP record: tgid u32,
// fd u32, the reader's pid namespace level u32, the socket's netns inode
// u32, the reader's namespace's tcp_keepalive_time in jiffies u32 (with
// its value in seconds it gives HZ), the socket's protocol u16, and a
// byte that says whether a TCP record follows.
const (
	fileHeaderSize = 24
	fileRecordSize = fileHeaderSize + tcpRecordSize

	hdrPID      = 0
	hdrFD       = 4
	hdrPidLevel = 8
	hdrNetns    = 12
	hdrSelfSys  = 16
	hdrProtocol = 20
	hdrFull     = 22
)

type filesLayout struct {
	tcp                                      *tcpLayout
	metaOff, seqOff, taskOff, fdOff, fileOff int16
	tgid, socketType, socketSk, family       field
	fileInode, inodeIno                      field
	threadPid, pidLevel                      field
	skNet, netInum, skUID                    field
	nsproxy, nsNet                           field
	skCookie                                 field
	// castFn and tcpSockID are bpf_rdonly_cast's and struct tcp_sock's
	// BTF ids; castFn 0: the kernel cannot cast, records carry no TCP part.
	castFn, tcpSockID btf.TypeID
	// mptcpSockID and struct mptcp_sock's conn_list and first, where the
	// kernel has MPTCP (else 0: MPTCP sockets come without a TCP part).
	mptcpSockID     btf.TypeID
	connList, first field
}

// noCast makes the program list descriptors only, as on a kernel without
// bpf_rdonly_cast (before 6.2): tests check that variant loads and lists.
var noCast bool

// TestingWithoutCast makes the next NewFilesReader build the listing-only
// program a kernel without bpf_rdonly_cast gets, so that callers can test
// their fallback on this kernel; undo restores the full read.
func TestingWithoutCast() (undo func()) {
	noCast = true
	return func() { noCast = false }
}

func loadFilesLayout() (*filesLayout, error) {
	tl, err := loadTCPLayout()
	if err != nil {
		return nil, err
	}
	var fs fields
	l := &filesLayout{
		tcp:        tl,
		metaOff:    fs.get("bpf_iter__task_file", "meta").off,
		seqOff:     fs.get("bpf_iter_meta", "seq").off,
		taskOff:    fs.get("bpf_iter__task_file", "task").off,
		fdOff:      fs.scalar("bpf_iter__task_file", "fd").off,
		fileOff:    fs.get("bpf_iter__task_file", "file").off,
		tgid:       fs.scalar("task_struct", "tgid"),
		socketType: fs.scalar("socket", "type"),
		socketSk:   fs.scalar("socket", "sk"),
		family:     fs.scalar("sock", "__sk_common", "skc_family"),
		fileInode:  fs.scalar("file", "f_inode"),
		inodeIno:   fs.scalar("inode", "i_ino"),
		threadPid:  fs.scalar("task_struct", "thread_pid"),
		pidLevel:   fs.scalar("pid", "level"),
		skNet:      fs.scalar("sock", "__sk_common", "skc_net", "net"),
		netInum:    fs.scalar("net", "ns", "inum"),
		skUID:      fs.scalar("sock", "sk_uid", "val"),
		nsproxy:    fs.scalar("task_struct", "nsproxy"),
		nsNet:      fs.scalar("nsproxy", "net_ns"),
		skCookie:   fs.scalar("sock", "__sk_common", "skc_cookie", "counter"),
	}
	l.castFn, l.tcpSockID, _ = kfuncCast("tcp_sock")
	if noCast {
		l.castFn = 0
	}
	var ms fields
	l.connList, l.first = ms.get("mptcp_sock", "conn_list"), ms.scalar("mptcp_sock", "first")
	if _, id, ok := kfuncCast("mptcp_sock"); ok && ms.err == nil {
		l.mptcpSockID = id
	}
	if fs.err != nil {
		return nil, fs.err
	}
	if l.tgid.bytes != 4 || l.pidLevel.bytes != 4 || l.inodeIno.bytes > 8 || l.netInum.bytes != 4 || l.skUID.bytes != 4 {
		return nil, fmt.Errorf("%w: task_struct.tgid, pid.level, ns_common.inum or sk_uid is not 4 bytes", ErrUnsupported)
	}
	return l, nil
}

// filesInstructions writes one record for each descriptor that is an inet
// stream socket: who holds it, its inode and namespace, and for a TCP
// socket the same TCP record the iter/tcp program writes. It reads through
// the file the iterator holds a reference on; it takes no socket lock and
// calls nothing that changes a socket (bpf_get_socket_cookie only numbers
// one that has no cookie yet, as ss -e does).
func filesInstructions(l *filesLayout) asm.Instructions {
	const rec = -fileRecordSize
	const tcp = rec + fileHeaderSize
	tl := l.tcp
	var b builder
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, l.fileOff, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSockFromFile.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.LoadMem(asm.R1, asm.R9, l.socketType.off, l.socketType.size),
		asm.JNE.Imm(asm.R1, unix.SOCK_STREAM, "out"),
	)
	b.zero(rec, fileRecordSize)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, l.fileInode.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.inodeIno.off, l.inodeIno.size),
		asm.StoreMem(asm.RFP, tcp+recInode, asm.R1, l.inodeIno.size),
		// From here R7 is the socket's struct sock.
		asm.LoadMem(asm.R7, asm.R9, l.socketSk.off, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		asm.LoadMem(asm.R1, asm.R7, l.family.off, l.family.size),
		asm.JEq.Imm(asm.R1, unix.AF_INET, "inet"),
		asm.JNE.Imm(asm.R1, unix.AF_INET6, "out"),
	)
	b.mark("inet")
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, tl.skProtocol.off, tl.skProtocol.size),
		asm.StoreMem(asm.RFP, rec+hdrProtocol, asm.R1, asm.Half),
		asm.JEq.Imm(asm.R1, unix.IPPROTO_TCP, "proto"),
		asm.JNE.Imm(asm.R1, IPProtoMPTCP, "out"),
	)
	b.mark("proto")
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, l.taskOff, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R1, asm.R1, l.tgid.off, asm.Word),
		asm.StoreMem(asm.RFP, rec+hdrPID, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, l.fdOff, asm.Word),
		asm.StoreMem(asm.RFP, rec+hdrFD, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, l.skNet.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.netInum.off, asm.Word),
		asm.StoreMem(asm.RFP, rec+hdrNetns, asm.R1, asm.Word),
		// The reader's own pid namespace level and namespace sysctl.
		asm.FnGetCurrentTaskBtf.Call(),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R1, asm.R8, l.threadPid.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.pidLevel.off, asm.Word),
		asm.StoreMem(asm.RFP, rec+hdrPidLevel, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R8, l.nsproxy.off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "sk"),
		asm.LoadMem(asm.R1, asm.R1, l.nsNet.off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "sk"),
		asm.LoadMem(asm.R1, asm.R1, tl.sysTime.off, tl.sysTime.size),
		asm.StoreMem(asm.RFP, rec+hdrSelfSys, asm.R1, asm.Word),
	)
	b.mark("sk")
	if l.castFn != 0 {
		b.castTCP(l, rec)
		b.mark("write")
	}
	b.seqWrite(l.metaOff, l.seqOff, rec, fileRecordSize)
	b.exit()
	return b.insns
}

// castTCP writes the TCP record of a TCP socket (R7 its struct sock, R9
// its struct socket) and marks the record full; other sockets jump to
// "write" with the header alone.
func (b *builder) castTCP(l *filesLayout, rec int16) {
	tcp := rec + fileHeaderSize
	tl := l.tcp
	b.emit(
		// A TCP socket (not an MPTCP one) has its options in its own
		// struct tcp_sock, which an untrusted struct sock pointer cannot
		// read without the cast. The cookie is read, not made: a socket
		// no one asked for one yet reads as 0.
		asm.LoadMem(asm.R1, asm.R7, tl.skProtocol.off, tl.skProtocol.size),
		asm.JEq.Imm(asm.R1, unix.IPPROTO_TCP, "tcpsk"),
	)
	if l.mptcpSockID != 0 {
		// An MPTCP socket with a single subflow (every connection to or
		// from a plain TCP peer: Go's listeners are MPTCP) reads as that
		// subflow, as the iter/tcp walk reads it; one with several is
		// left to that walk, which compares them.
		b.emit(
			asm.JNE.Imm(asm.R1, IPProtoMPTCP, "write"),
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.Mov.Imm(asm.R2, int32(l.mptcpSockID)),
			kfuncCall(l.castFn),
			asm.JEq.Imm(asm.R0, 0, "write"),
			asm.LoadMem(asm.R1, asm.R0, l.connList.off, asm.DWord),
			asm.LoadMem(asm.R2, asm.R0, l.connList.off+8, asm.DWord),
			asm.JNE.Reg(asm.R1, asm.R2, "write"),
			asm.LoadMem(asm.R7, asm.R0, l.first.off, asm.DWord),
			asm.JEq.Imm(asm.R7, 0, "write"),
		)
	} else {
		b.emit(asm.Ja.Label("write"))
	}
	b.mark("tcpsk")
	b.emit(
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mov.Imm(asm.R2, int32(l.tcpSockID)),
		kfuncCall(l.castFn),
		asm.JEq.Imm(asm.R0, 0, "write"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.StoreImm(asm.RFP, rec+hdrFull, 1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R7, l.skCookie.off, asm.DWord),
		asm.StoreMem(asm.RFP, tcp+recCookie, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R7, l.skUID.off, asm.Word),
		asm.StoreMem(asm.RFP, tcp+recUID, asm.R1, asm.Word),
	)
	b.tcpFields(tl, tcp)
}

// kfuncCall calls the kernel function of BTF id fn.
func kfuncCall(fn btf.TypeID) asm.Instruction {
	return asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: int64(fn)}
}

// ErrPidNamespace means kadiag runs in a child pid namespace: the
// task_file iterator walks that namespace's tasks, but a task's tgid is the
// initial namespace's number, which the caller's /proc does not know.
var ErrPidNamespace = errors.New("kadiag runs in a child pid namespace: the task_file iterator's pids would be the host's")

// FilesReader is a loaded iter/task_file program: Each walks every
// process, EachOf one process (kernels >= 6.1 take a pid for the walk).
type FilesReader struct {
	layout *tcpLayout
	prog   *ebpf.Program
	all    *link.Iter
	noPid  atomic.Bool // the kernel refused a pid-scoped walk
	// hz, once a walk derived it (a kernel constant): the walks of a scan,
	// one per process, then read no sysctl file each.
	hz atomic.Int64
}

// NewFilesReader loads the iter/task_file program.
func NewFilesReader() (*FilesReader, error) {
	spec, err := kernelSpec()
	if err != nil {
		return nil, err
	}
	if err := need("run a BPF task_file iterator", iterCaps...); err != nil {
		return nil, err
	}
	l, err := loadFilesLayout()
	if err != nil {
		return nil, err
	}
	prog, it, err := loadIter("kadiag_read_fds", "task_file", filesInstructions(l), "iter/task_file program", spec)
	if err != nil {
		return nil, err
	}
	return &FilesReader{layout: l.tcp, prog: prog, all: it}, nil
}

// Close detaches and unloads the program.
func (r *FilesReader) Close() error {
	err := r.all.Close()
	if perr := r.prog.Close(); err == nil {
		err = perr
	}
	return err
}

// Each calls f for every process's inet stream socket descriptors, in one
// pass over every task of kadiag's pid namespace, each as its record
// arrives (process order), so that 100,000 sockets cost one buffer, not a
// slice of them; f must not keep the pointer. Pids are as kadiag's pid
// namespace numbers them; in a child pid namespace it returns
// ErrPidNamespace.
func (r *FilesReader) Each(f func(*FileSocket)) error {
	it, err := r.all.Open()
	if err != nil {
		return fmt.Errorf("run the task_file iterator: %w", err)
	}
	defer it.Close()
	if err := r.decode(it, 0, f); err != nil {
		return fmt.Errorf("run the task_file iterator: %w", err)
	}
	return nil
}

// EachOf is Each for one process, walking only its descriptor table. A
// process that does not exist has none. ErrUnsupported on kernels before
// 6.1, which cannot scope the walk (use Each).
func (r *FilesReader) EachOf(pid int, f func(*FileSocket)) error {
	if r.noPid.Load() {
		return ErrUnsupported
	}
	var info [3]uint32
	info[1] = uint32(pid)
	var attr [32]byte
	le := binary.NativeEndian
	le.PutUint32(attr[0:], uint32(r.prog.FD()))
	le.PutUint32(attr[8:], uint32(ebpf.AttachTraceIter))
	le.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&info[0]))))
	le.PutUint32(attr[24:], uint32(unsafe.Sizeof(info)))
	lfd, _, errno := unix.Syscall(unix.SYS_BPF, bpfLinkCreate, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	switch {
	case errno == unix.ESRCH || errno == unix.ENOENT:
		return nil
	case errno == unix.EINVAL || errno == unix.E2BIG:
		r.noPid.Store(true)
		return ErrUnsupported
	case errno != 0:
		return fmt.Errorf("attach the task_file iterator to pid %d: %w", pid, errno)
	}
	defer unix.Close(int(lfd))
	var iattr [8]byte
	le.PutUint32(iattr[0:], uint32(lfd))
	ifd, _, errno := unix.Syscall(unix.SYS_BPF, bpfIterCreate, uintptr(unsafe.Pointer(&iattr[0])), unsafe.Sizeof(iattr))
	if errno != 0 {
		return fmt.Errorf("open the task_file iterator of pid %d: %w", pid, errno)
	}
	it := os.NewFile(ifd, "bpf_iter")
	defer it.Close()
	if err := r.decode(it, pid, f); err != nil {
		return fmt.Errorf("run the task_file iterator of pid %d: %w", pid, err)
	}
	return nil
}

// bpf(2) commands (include/uapi/linux/bpf.h).
const (
	bpfLinkCreate = 28
	bpfIterCreate = 33
)

// decode decodes the records src gives, in large reads (each read(2) runs
// the program over as many descriptors as fit); with pid non-zero every
// record is that process's, whatever number the initial pid namespace
// gives it.
func (r *FilesReader) decode(src io.Reader, pid int, f func(*FileSocket)) error {
	d := tcpDecoder{l: r.layout, hz: int(r.hz.Load())}
	defer func() { r.hz.Store(int64(d.hz)) }()
	var fs FileSocket
	left, err := eachRecord(src, fileRecordSize, func(rec []byte) error {
		if err := d.file(rec, pid, &fs); err != nil {
			return err
		}
		f(&fs)
		return nil
	})
	if err == nil && left != 0 {
		err = fmt.Errorf("task_file iterator: output ends in %d bytes of a %d-byte record", left, fileRecordSize)
	}
	return err
}

// file decodes one record into fs. HZ, unless known, comes from the first
// full record: the reader's own namespace's tcp_keepalive_time in jiffies
// and in seconds.
func (d *tcpDecoder) file(r []byte, pid int, fs *FileSocket) error {
	le := binary.LittleEndian
	if pid == 0 {
		if le.Uint32(r[hdrPidLevel:]) != 0 {
			return ErrPidNamespace
		}
		pid = int(le.Uint32(r[hdrPID:]))
	}
	*fs = FileSocket{
		PID:      pid,
		FD:       int(le.Uint32(r[hdrFD:])),
		Inode:    le.Uint64(r[fileHeaderSize+recInode:]),
		Netns:    le.Uint32(r[hdrNetns:]),
		Protocol: int(le.Uint16(r[hdrProtocol:])),
		Full:     r[hdrFull] != 0,
	}
	if !fs.Full {
		return nil
	}
	if d.hz == 0 {
		secs, err := keepaliveTimeSecs()
		if err != nil {
			return err
		}
		sys := int(le.Uint32(r[hdrSelfSys:]))
		if sys <= 0 || sys%secs != 0 {
			return fmt.Errorf("%w: tcp_keepalive_time is %d jiffies and %d s: cannot tell HZ", ErrUnsupported, sys, secs)
		}
		d.hz = sys / secs
	}
	var err error
	fs.TCP, err = d.record(r[fileHeaderSize:])
	return err
}
