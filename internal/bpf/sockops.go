package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// sock_ops callbacks (include/uapi/linux/bpf.h, enum BPF_SOCK_OPS_*) in
// which bpf_setsockopt takes the keepalive options: a full socket, locked.
const (
	sockOpsActiveEstablished  = 4
	sockOpsPassiveEstablished = 5
	sockOpsTCPListen          = 11
)

// license: bpf_seq_write and bpf_setsockopt are GPL-only helpers.
const license = "Dual MIT/GPL"

// sockOpsInstructions sets the options when a connection is established,
// either way, and when a socket starts listening (accepted sockets inherit
// from the listener). A sock_ops program must return 1.
func sockOpsInstructions(s Settings, info *ebpf.Map) asm.Instructions {
	var b builder
	if info != nil {
		// Not read: it ties the policy's record to the program, so that
		// --list finds held policies through the kernel's list of links.
		b.emit(asm.LoadMapPtr(asm.R2, info.FD()))
	}
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		// struct bpf_sock_ops starts with __u32 op.
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word),
		asm.JEq.Imm32(asm.R2, sockOpsActiveEstablished, "apply"),
		asm.JEq.Imm32(asm.R2, sockOpsPassiveEstablished, "apply"),
		asm.JEq.Imm32(asm.R2, sockOpsTCPListen, "apply"),
		asm.Ja.Label("out"),
	)
	b.mark("apply")
	b.enforce(asm.R6, s.options(), false, nil)
	b.mark("out")
	b.emit(
		asm.Mov.Imm(asm.R0, 1),
		asm.Return(),
	)
	return b.insns
}

// newSockOps loads the sock_ops program for s.
func newSockOps(s Settings, info *ebpf.Map) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "kadiag_sockops",
		Type:         ebpf.SockOps,
		AttachType:   ebpf.AttachCGroupSockOps,
		Instructions: sockOpsInstructions(s, info),
		License:      license,
	})
	if err != nil {
		return nil, loadErr("load the sock_ops program", cgroupCaps, fmt.Errorf("%w", err))
	}
	return p, nil
}
