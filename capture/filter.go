package capture

import (
	"sort"

	"golang.org/x/net/bpf"
)

// maxFilterPorts bounds the ports compiled into the kernel filter: classic
// BPF jumps reach at most 255 instructions ahead. More ports fall back to
// all of TCP in the kernel and the port check in user space.
const maxFilterPorts = 40

// tcpFilter assembles the kernel filter: IPv4 or IPv6 TCP (optionally only
// these ports on either side), cut to snaplen bytes. netOff is where the IP
// header starts (14 after an Ethernet header, 0 on raw IP devices). With
// dropOutgoing, frames the host sends are rejected: on loopback every packet
// is seen twice, once leaving and once arriving (libpcap does the same).
//
// There is no pure-Go compiler for tcpdump's filter language, so the filter
// is assembled here.
func tcpFilter(netOff uint32, ports map[uint16]bool, snaplen uint32, dropOutgoing bool) ([]bpf.RawInstruction, error) {
	var list []uint16
	if len(ports) <= maxFilterPorts {
		for p := range ports {
			list = append(list, p)
		}
		sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
	}
	var prog []bpf.Instruction
	// Instructions are appended with symbolic targets and resolved below.
	type jump struct {
		at      int
		toTrue  string
		toFalse string
		cond    bpf.JumpTest
		val     uint32
	}
	var jumps []jump
	labels := map[string]int{}
	label := func(name string) { labels[name] = len(prog) }
	jmp := func(cond bpf.JumpTest, val uint32, t, f string) {
		jumps = append(jumps, jump{at: len(prog), toTrue: t, toFalse: f, cond: cond, val: val})
		prog = append(prog, nil)
	}
	if dropOutgoing {
		prog = append(prog, bpf.LoadExtension{Num: bpf.ExtType})
		jmp(bpf.JumpEqual, 4 /* PACKET_OUTGOING */, "reject", "")
	}
	if netOff == 0 {
		// Raw IP: the version nibble says which.
		prog = append(prog, bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		jmp(bpf.JumpEqual, 4, "ip4", "")
		jmp(bpf.JumpEqual, 6, "ip6", "reject")
	} else {
		prog = append(prog, bpf.LoadAbsolute{Off: netOff - 2, Size: 2})
		jmp(bpf.JumpEqual, 0x0800, "ip4", "")
		jmp(bpf.JumpEqual, 0x86dd, "ip6", "reject")
	}
	label("ip4")
	prog = append(prog, bpf.LoadAbsolute{Off: netOff + 9, Size: 1})
	jmp(bpf.JumpEqual, 6, "", "reject")
	if len(list) > 0 {
		// Later fragments carry no TCP header.
		prog = append(prog, bpf.LoadAbsolute{Off: netOff + 6, Size: 2})
		jmp(bpf.JumpBitsSet, 0x1fff, "reject", "")
		prog = append(prog, bpf.LoadMemShift{Off: netOff})
		prog = append(prog, bpf.LoadIndirect{Off: netOff, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		prog = append(prog, bpf.LoadIndirect{Off: netOff + 2, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		jmp(bpf.JumpEqual, 0, "reject", "reject")
	} else {
		jmp(bpf.JumpEqual, 0, "accept", "accept")
	}
	label("ip6")
	prog = append(prog, bpf.LoadAbsolute{Off: netOff + 6, Size: 1})
	jmp(bpf.JumpEqual, 6, "", "reject")
	if len(list) > 0 {
		prog = append(prog, bpf.LoadAbsolute{Off: netOff + 40, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		prog = append(prog, bpf.LoadAbsolute{Off: netOff + 42, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		jmp(bpf.JumpEqual, 0, "reject", "reject")
	}
	label("accept")
	prog = append(prog, bpf.RetConstant{Val: snaplen})
	label("reject")
	prog = append(prog, bpf.RetConstant{Val: 0})

	for _, j := range jumps {
		target := func(name string) uint8 {
			if name == "" {
				return 0
			}
			return uint8(labels[name] - j.at - 1)
		}
		prog[j.at] = bpf.JumpIf{Cond: j.cond, Val: j.val, SkipTrue: target(j.toTrue), SkipFalse: target(j.toFalse)}
	}
	return bpf.Assemble(prog)
}
