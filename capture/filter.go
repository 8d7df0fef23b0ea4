package capture

import (
	"fmt"
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
	// checkPorts checks the TCP ports at X+off against the list.
	checkPorts := func(off uint32) {
		prog = append(prog, bpf.LoadIndirect{Off: off, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		prog = append(prog, bpf.LoadIndirect{Off: off + 2, Size: 2})
		for _, p := range list {
			jmp(bpf.JumpEqual, uint32(p), "accept", "")
		}
		jmp(bpf.JumpEqual, 0, "reject", "reject")
	}
	if dropOutgoing {
		prog = append(prog, bpf.LoadExtension{Num: bpf.ExtType})
		jmp(bpf.JumpEqual, 4 /* PACKET_OUTGOING */, "reject", "")
	}
	// X holds where the IP header starts: after the Ethernet header and any
	// VLAN tags still in the frame (the kernel usually strips the outer one
	// into metadata; with QinQ the inner one stays).
	prog = append(prog, bpf.LoadConstant{Dst: bpf.RegX, Val: netOff})
	if netOff == 0 {
		// Raw IP: the version nibble says which.
		prog = append(prog, bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		jmp(bpf.JumpEqual, 4, "ip4", "")
		jmp(bpf.JumpEqual, 6, "ip6", "reject")
	} else {
		prog = append(prog, bpf.LoadAbsolute{Off: netOff - 2, Size: 2})
		for tags := uint32(1); tags <= 2; tags++ {
			jmp(bpf.JumpEqual, 0x8100, "tag"+fmt.Sprint(tags), "")
			jmp(bpf.JumpEqual, 0x88a8, "tag"+fmt.Sprint(tags), "ethertype")
			label("tag" + fmt.Sprint(tags))
			prog = append(prog, bpf.LoadConstant{Dst: bpf.RegX, Val: netOff + 4*tags},
				bpf.LoadAbsolute{Off: netOff - 2 + 4*tags, Size: 2})
		}
		label("ethertype")
		jmp(bpf.JumpEqual, 0x0800, "ip4", "")
		jmp(bpf.JumpEqual, 0x86dd, "ip6", "reject")
	}
	label("ip4")
	prog = append(prog, bpf.LoadIndirect{Off: 9, Size: 1})
	jmp(bpf.JumpEqual, 6, "", "reject")
	if len(list) > 0 {
		// Later fragments carry no TCP header.
		prog = append(prog, bpf.LoadIndirect{Off: 6, Size: 2})
		jmp(bpf.JumpBitsSet, 0x1fff, "reject", "")
		// X += 4 * IHL: X then points at the TCP header.
		prog = append(prog, bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{})
		checkPorts(0)
	} else {
		jmp(bpf.JumpEqual, 0, "accept", "accept")
	}
	label("ip6")
	prog = append(prog, bpf.LoadIndirect{Off: 6, Size: 1})
	jmp(bpf.JumpEqual, 6, "", "reject")
	if len(list) > 0 {
		checkPorts(40)
	}
	label("accept")
	prog = append(prog, bpf.RetConstant{Val: snaplen})
	label("reject")
	prog = append(prog, bpf.RetConstant{Val: 0})

	for _, j := range jumps {
		var skips [2]uint8
		for i, name := range []string{j.toTrue, j.toFalse} {
			if name == "" {
				continue
			}
			n := labels[name] - j.at - 1
			if n < 0 || n > 255 {
				return nil, fmt.Errorf("filter jump to %s spans %d instructions (classic BPF allows 255)", name, n)
			}
			skips[i] = uint8(n)
		}
		prog[j.at] = bpf.JumpIf{Cond: j.cond, Val: j.val, SkipTrue: skips[0], SkipFalse: skips[1]}
	}
	return bpf.Assemble(prog)
}
