package bpf

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// struct bpf_sockopt (include/uapi/linux/bpf.h): the context of a
// cgroup/setsockopt program.
const (
	sockoptSk        = 0  // struct bpf_sock *
	sockoptOptval    = 8  // void *, the caller's value copied into the kernel
	sockoptOptvalEnd = 16 // void *
	sockoptLevel     = 24 // __s32
	sockoptOptname   = 28 // __s32
	bpfSockProtocol  = 12 // struct bpf_sock: __u32 protocol
)

// setsockoptInstructions sees every setsockopt of a process in the cgroup
// before the kernel applies it and rewrites the value in place where it
// would defeat the policy: SO_KEEPALIVE 0 becomes 1, a timing longer than
// the policy's (or TCP_USER_TIMEOUT 0, "off") becomes the policy's. Zero or
// negative timings are left for the kernel to refuse with EINVAL. Returning
// 1 lets the call proceed; the program never refuses a call.
func setsockoptInstructions(s Settings) asm.Instructions {
	var b builder
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, sockoptSk, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.LoadMem(asm.R2, asm.R1, bpfSockProtocol, asm.Word),
		asm.JEq.Imm32(asm.R2, unix.IPPROTO_TCP, "tcp"),
		asm.JEq.Imm32(asm.R2, unix.IPPROTO_MPTCP, "tcp"),
		asm.Ja.Label("out"),
	)
	b.mark("tcp")
	b.emit(
		asm.LoadMem(asm.R7, asm.R6, sockoptOptval, asm.DWord),
		asm.LoadMem(asm.R8, asm.R6, sockoptOptvalEnd, asm.DWord),
		asm.Mov.Reg(asm.R9, asm.R7),
		asm.Add.Imm(asm.R9, 4),
		asm.JGT.Reg(asm.R9, asm.R8, "out"),
		asm.LoadMem(asm.R2, asm.R6, sockoptLevel, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, sockoptOptname, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, 0, asm.Word),
	)
	for _, o := range s.options() {
		next, rewrite := b.fresh("next"), b.fresh("rewrite")
		b.emit(
			asm.JNE.Imm32(asm.R2, o.level, next),
			asm.JNE.Imm32(asm.R3, o.name, next),
		)
		switch {
		case o.on:
			b.emit(asm.JNE.Imm32(asm.R4, 0, "out"))
		case o.zeroIsOff:
			b.emit(
				asm.JEq.Imm32(asm.R4, 0, rewrite),
				asm.JSLE.Imm32(asm.R4, o.target, "out"),
			)
		default:
			b.emit(asm.JSLE.Imm32(asm.R4, o.target, "out"))
		}
		b.mark(rewrite)
		b.emit(
			asm.StoreImm(asm.R7, 0, int64(o.target), asm.Word),
			asm.Ja.Label("out"),
		)
		b.mark(next)
		b.emit(asm.Mov.Imm(asm.R0, 1))
	}
	b.mark("out")
	b.emit(
		asm.Mov.Imm(asm.R0, 1),
		asm.Return(),
	)
	return b.insns
}

// newSetsockopt loads the cgroup/setsockopt program for s.
func newSetsockopt(s Settings) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "kadiag_sockopt",
		Type:         ebpf.CGroupSockopt,
		AttachType:   ebpf.AttachCGroupSetsockopt,
		Instructions: setsockoptInstructions(s),
		License:      license,
	})
	if err != nil {
		return nil, loadErr("load the cgroup/setsockopt program", cgroupCaps, err)
	}
	return p, nil
}
