package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// FileSocket is one descriptor of a process that refers to an inet stream
// socket (TCP or MPTCP), as an iter/task_file program saw it.
type FileSocket struct {
	PID   int    // thread group id, in kadiag's pid namespace
	FD    int    // descriptor number in the process
	Inode uint64 // socket inode, as /proc/PID/fd/FD's socket:[inode]
}

// fileRecordSize: tgid u32, fd u32, inode u64, and the pid namespace
// level of the reader (kadiag) u32, padding.
const fileRecordSize = 24

type filesLayout struct {
	metaOff, seqOff, taskOff, fdOff, fileOff int16
	tgid, socketType, socketSk, family       field
	fileInode, inodeIno                      field
	threadPid, pidLevel                      field
}

func loadFilesLayout() (*filesLayout, error) {
	var fs fields
	l := &filesLayout{
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
	}
	if fs.err != nil {
		return nil, fs.err
	}
	if l.tgid.bytes != 4 || l.pidLevel.bytes != 4 || l.inodeIno.bytes > 8 {
		return nil, fmt.Errorf("%w: task_struct.tgid is %d bytes", ErrUnsupported, l.tgid.bytes)
	}
	return l, nil
}

// filesInstructions writes (tgid, fd, inode) for every descriptor of every
// process that is an AF_INET or AF_INET6 stream socket. Threads that share
// their leader's descriptor table are visited once (the kernel's
// task_file iterator skips them).
func filesInstructions(l *filesLayout) asm.Instructions {
	const rec = -fileRecordSize
	var b builder
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, l.fileOff, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, "out"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSockFromFile.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, l.socketType.off, l.socketType.size),
		asm.JNE.Imm(asm.R1, unix.SOCK_STREAM, "out"),
		asm.LoadMem(asm.R2, asm.R0, l.socketSk.off, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, "out"),
		asm.LoadMem(asm.R1, asm.R2, l.family.off, l.family.size),
		asm.JEq.Imm(asm.R1, unix.AF_INET, "inet"),
		asm.JNE.Imm(asm.R1, unix.AF_INET6, "out"),
	)
	b.mark("inet")
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, l.taskOff, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R1, asm.R1, l.tgid.off, asm.Word),
		asm.StoreMem(asm.RFP, rec, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, l.fdOff, asm.Word),
		asm.StoreMem(asm.RFP, rec+4, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, rec+8, 0, asm.Word),
		asm.StoreImm(asm.RFP, rec+12, 0, asm.Word),
		asm.StoreImm(asm.RFP, rec+20, 0, asm.Word),
		// The reader's pid namespace level: tgid is the initial
		// namespace's number, right only for a reader at level 0.
		asm.FnGetCurrentTaskBtf.Call(),
		asm.LoadMem(asm.R1, asm.R0, l.threadPid.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.pidLevel.off, asm.Word),
		asm.StoreMem(asm.RFP, rec+16, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, l.fileInode.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.inodeIno.off, l.inodeIno.size),
		asm.StoreMem(asm.RFP, rec+8, asm.R1, l.inodeIno.size),
		asm.LoadMem(asm.R1, asm.R6, l.metaOff, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, l.seqOff, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, rec),
		asm.Mov.Imm(asm.R3, fileRecordSize),
		asm.FnSeqWrite.Call(),
	)
	b.mark("out")
	b.emit(
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	return b.insns
}

// ErrPidNamespace means kadiag runs in a child pid namespace: the
// task_file iterator walks that namespace's tasks, but a task's tgid is the
// initial namespace's number, which the caller's /proc does not know.
var ErrPidNamespace = errors.New("kadiag runs in a child pid namespace: the task_file iterator's pids would be the host's")

// FilesReader is a loaded iter/task_file program: All walks every
// process, Of one process (kernels >= 6.1 take a pid for the walk).
type FilesReader struct {
	prog  *ebpf.Program
	all   *link.Iter
	noPid atomic.Bool // the kernel refused a pid-scoped walk
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
	return &FilesReader{prog: prog, all: it}, nil
}

// Close detaches and unloads the program.
func (r *FilesReader) Close() error {
	err := r.all.Close()
	if perr := r.prog.Close(); err == nil {
		err = perr
	}
	return err
}

// All returns every process's inet stream socket descriptors, in one pass
// over every task of kadiag's pid namespace. Pids are as kadiag's pid
// namespace numbers them; in a child pid namespace it returns
// ErrPidNamespace.
func (r *FilesReader) All() ([]FileSocket, error) {
	f, err := r.all.Open()
	if err != nil {
		return nil, fmt.Errorf("run the task_file iterator: %w", err)
	}
	defer f.Close()
	b, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("run the task_file iterator: %w", err)
	}
	return decodeFiles(b, 0)
}

// Of returns the inet stream socket descriptors of one process, walking
// only its descriptor table. A process that is gone has none. It returns
// ErrUnsupported on kernels before 6.1, which cannot scope the walk
// (then use All).
func (r *FilesReader) Of(pid int) ([]FileSocket, error) {
	if r.noPid.Load() {
		return nil, ErrUnsupported
	}
	// union bpf_iter_link_info: task.tid, task.pid, task.pid_fd.
	var info [3]uint32
	info[1] = uint32(pid)
	// union bpf_attr for BPF_LINK_CREATE: prog_fd, target_fd, attach_type,
	// flags, iter_info, iter_info_len.
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
		return nil, nil
	case errno == unix.EINVAL || errno == unix.E2BIG:
		r.noPid.Store(true)
		return nil, ErrUnsupported
	case errno != 0:
		return nil, fmt.Errorf("attach the task_file iterator to pid %d: %w", pid, errno)
	}
	defer unix.Close(int(lfd))
	var iattr [8]byte
	le.PutUint32(iattr[0:], uint32(lfd))
	ifd, _, errno := unix.Syscall(unix.SYS_BPF, bpfIterCreate, uintptr(unsafe.Pointer(&iattr[0])), unsafe.Sizeof(iattr))
	if errno != 0 {
		return nil, fmt.Errorf("open the task_file iterator of pid %d: %w", pid, errno)
	}
	f := os.NewFile(ifd, "bpf_iter")
	defer f.Close()
	b, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("run the task_file iterator of pid %d: %w", pid, err)
	}
	return decodeFiles(b, pid)
}

// bpf(2) commands (include/uapi/linux/bpf.h).
const (
	bpfLinkCreate = 28
	bpfIterCreate = 33
)

// decodeFiles decodes records; with pid non-zero every record is that
// process's, whatever number the initial pid namespace gives it.
func decodeFiles(b []byte, pid int) ([]FileSocket, error) {
	if len(b)%fileRecordSize != 0 {
		return nil, fmt.Errorf("task_file iterator: %d bytes of output, not a multiple of %d", len(b), fileRecordSize)
	}
	out := make([]FileSocket, 0, len(b)/fileRecordSize)
	le := binary.LittleEndian
	for ; len(b) > 0; b = b[fileRecordSize:] {
		p := pid
		if p == 0 {
			if le.Uint32(b[16:]) != 0 {
				return nil, ErrPidNamespace
			}
			p = int(le.Uint32(b))
		}
		out = append(out, FileSocket{PID: p, FD: int(le.Uint32(b[4:])), Inode: le.Uint64(b[8:])})
	}
	return out, nil
}

// SocketFiles loads the program, returns All's answer and unloads it.
func SocketFiles() ([]FileSocket, error) {
	r, err := NewFilesReader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.All()
}
