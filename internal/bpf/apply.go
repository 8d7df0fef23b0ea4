package bpf

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf/asm"
)

// builder collects instructions and puts a pending label on the next one.
type builder struct {
	insns asm.Instructions
	label string
	n     int
}

func (b *builder) emit(ins ...asm.Instruction) {
	for _, i := range ins {
		if b.label != "" {
			i = i.WithSymbol(b.label)
			b.label = ""
		}
		b.insns = append(b.insns, i)
	}
}

// mark labels the next instruction.
func (b *builder) mark(label string) {
	if b.label != "" {
		panic("bpf: two labels on one instruction: " + b.label + ", " + label)
	}
	b.label = label
}

// fresh returns a label unique within the program.
func (b *builder) fresh(what string) string {
	b.n++
	return fmt.Sprintf("%s_%d", what, b.n)
}

// scratch is the stack slot (R10-8) helpers read and write option values
// through.
const scratch = -8

// sockoptCall calls getsockopt or setsockopt(sk, level, name, R10-8, 4),
// sk being a callee-saved register. R0 holds the result.
func (b *builder) sockoptCall(fn asm.BuiltinFunc, sk asm.Register, o option) {
	b.emit(
		asm.Mov.Reg(asm.R1, sk),
		asm.Mov.Imm(asm.R2, o.level),
		asm.Mov.Imm(asm.R3, o.name),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, scratch),
		asm.Mov.Imm(asm.R5, 4),
		fn.Call(),
	)
}

// record lays out what the iterator reports per socket: the cookie, then
// for every option its value before, its value after and the setsockopt
// result (notSet when the value was kept).
type record struct {
	off int16 // stack offset of the record's start
}

const notSet = 1 // no helper returns 1: "left as it was"

func (r record) slot(i, field int) int16 { return r.off + 8 + int16(i*12+field*4) }

// recordSize is the size of one record for n options.
func recordSize(n int) int { return 8 + n*12 }

// enforce emits: for every option, read it; keep it when it already
// satisfies the setting (keepalive on; a timing positive and no longer
// than the target); otherwise set the target. With dry, nothing is set.
// With rec, the values before and after and the result land in the record.
func (b *builder) enforce(sk asm.Register, opts []option, dry bool, rec *record) {
	for i, o := range opts {
		set, done := b.fresh("set"), b.fresh("done")
		b.sockoptCall(asm.FnGetsockopt, sk, o)
		if rec != nil {
			b.emit(
				asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Word),
				asm.StoreMem(asm.RFP, rec.slot(i, 0), asm.R1, asm.Word),
				asm.StoreImm(asm.RFP, rec.slot(i, 2), notSet, asm.Word),
			)
			if o.readOnly {
				b.mark(done)
				b.sockoptCall(asm.FnGetsockopt, sk, o)
				b.emit(
					asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Word),
					asm.StoreMem(asm.RFP, rec.slot(i, 1), asm.R1, asm.Word),
				)
				continue
			}
		}
		if o.readOnly {
			continue
		}
		// An option that cannot be read is set: the kernel decides.
		b.emit(
			asm.JNE.Imm(asm.R0, 0, set),
			asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Word),
		)
		switch {
		case o.on:
			b.emit(asm.JNE.Imm32(asm.R1, 0, done))
		case o.zeroIsOff:
			b.emit(
				asm.JEq.Imm32(asm.R1, 0, set),
				asm.JSLE.Imm32(asm.R1, o.target, done),
			)
		default:
			b.emit(
				asm.JSLE.Imm32(asm.R1, 0, set),
				asm.JSLE.Imm32(asm.R1, o.target, done),
			)
		}
		b.mark(set)
		if dry {
			b.emit(asm.Ja.Label(done))
		} else {
			b.emit(asm.StoreImm(asm.RFP, scratch, int64(o.target), asm.Word))
			b.sockoptCall(asm.FnSetsockopt, sk, o)
			if rec != nil {
				b.emit(asm.StoreMem(asm.RFP, rec.slot(i, 2), asm.R0, asm.Word))
			}
		}
		b.mark(done)
		if rec != nil {
			b.sockoptCall(asm.FnGetsockopt, sk, o)
			b.emit(
				asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Word),
				asm.StoreMem(asm.RFP, rec.slot(i, 1), asm.R1, asm.Word),
			)
		} else {
			// Labels need an instruction to sit on; a harmless one.
			b.emit(asm.Mov.Imm(asm.R0, 0))
		}
	}
}

// zero clears size bytes of the stack from off: the verifier refuses a
// record with uninitialised bytes, and a record's unset fields read as 0.
func (b *builder) zero(off, size int16) {
	for o := int16(0); o < size; o += 4 {
		b.emit(asm.StoreImm(asm.RFP, off+o, 0, asm.Word))
	}
}

// seqWrite emits bpf_seq_write(ctx->meta->seq, R10+rec, size), the
// iterator's output; R6 holds the iterator context.
func (b *builder) seqWrite(metaOff, seqOff, rec int16, size int32) {
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, metaOff, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, seqOff, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(rec)),
		asm.Mov.Imm(asm.R3, size),
		asm.FnSeqWrite.Call(),
	)
}

// exit is every iterator program's end: "out" returns 0 (go on with the
// next object).
func (b *builder) exit() {
	b.mark("out")
	b.emit(
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
}

// eachRecord hands f each size-byte record src gives, read in 64 KiB reads
// (each read(2) runs the program over as many objects as fit); a record
// split between two reads waits for its rest. left is how many bytes of a
// last, cut record the output ended in.
func eachRecord(src io.Reader, size int, f func([]byte) error) (left int, err error) {
	buf := make([]byte, 64<<10)
	have := 0
	for {
		n, err := src.Read(buf[have:])
		have += n
		done := 0
		for ; have-done >= size; done += size {
			if err := f(buf[done : done+size]); err != nil {
				return 0, err
			}
		}
		have = copy(buf, buf[done:have])
		if err == io.EOF || (err == nil && n == 0) {
			return have, nil
		}
		if err != nil {
			return have, err
		}
	}
}
