package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// field is where a scalar or pointer member sits in a kernel struct, read
// from the running kernel's BTF. A bitfield is loaded as the smallest
// whole unit that starts at its first byte and holds all its bits (what
// the verifier accepts for a bitfield access); shift and mask extract it.
type field struct {
	off   int16    // byte offset of the load from the struct's start
	size  asm.Size // load width
	bytes int      // load width in bytes
	shift uint     // bitfields: bit position within the loaded unit
	bits  uint     // bitfields: width; 0 for a whole member
}

// extract returns the member's value from the loaded unit (little-endian
// bit numbering, as on the architectures kadiag builds for).
func (f field) extract(v uint64) uint64 {
	if f.bits == 0 {
		return v
	}
	return (v >> f.shift) & (1<<f.bits - 1)
}

// lookupField follows path (member names, each possibly inside anonymous
// unions and structs) from struct structName, e.g. ("tcp_sock",
// "inet_conn", "icsk_inet", "sk", "sk_socket").
func lookupField(structName string, path ...string) (field, error) {
	spec, err := kernelSpec()
	if err != nil {
		return field{}, err
	}
	var s *btf.Struct
	if err := spec.TypeByName(structName, &s); err != nil {
		return field{}, fmt.Errorf("%w: BTF struct %s: %v", ErrUnsupported, structName, err)
	}
	var (
		t    btf.Type = s
		bits uint32
		m    btf.Member
	)
	for i, name := range path {
		var ms []btf.Member
		switch c := btf.UnderlyingType(t).(type) {
		case *btf.Struct:
			ms = c.Members
		case *btf.Union:
			ms = c.Members
		default:
			return field{}, fmt.Errorf("%w: BTF %s.%v: %s is not a struct", ErrUnsupported, structName, path[:i], name)
		}
		var off uint32
		var ok bool
		m, off, ok = memberBits(ms, name, 0)
		if !ok {
			return field{}, fmt.Errorf("%w: BTF struct %s has no member %v", ErrUnsupported, structName, path[:i+1])
		}
		bits += off
		t = m.Type
	}
	size, err := btf.Sizeof(t)
	if err != nil {
		return field{}, fmt.Errorf("%w: BTF %s.%v: %v", ErrUnsupported, structName, path, err)
	}
	f := field{off: int16(bits / 8), bytes: size}
	if m.BitfieldSize > 0 {
		f.bits = uint(m.BitfieldSize)
		f.shift = uint(bits % 8)
		f.bytes = 1
		for uint(f.bytes*8) < f.shift+f.bits {
			f.bytes *= 2
		}
	}
	switch f.bytes {
	case 1:
		f.size = asm.Byte
	case 2:
		f.size = asm.Half
	case 4:
		f.size = asm.Word
	case 8:
		f.size = asm.DWord
	default:
		f.size = asm.InvalidSize // a struct: only its offset is used
	}
	return f, nil
}

// memberBits finds a member by name, descending into anonymous members,
// and returns it with its bit offset from the start of ms's struct.
func memberBits(ms []btf.Member, name string, base uint32) (btf.Member, uint32, bool) {
	for _, m := range ms {
		off := base + uint32(m.Offset)
		if m.Name == name {
			return m, off, true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if f, o, ok := memberBits(t.Members, name, off); ok {
				return f, o, true
			}
		case *btf.Union:
			if f, o, ok := memberBits(t.Members, name, off); ok {
				return f, o, true
			}
		}
	}
	return btf.Member{}, 0, false
}

// enumValue returns the value of a kernel enum constant (SOCK_KEEPOPEN).
func enumValue(enumName, value string) (uint64, error) {
	spec, err := kernelSpec()
	if err != nil {
		return 0, err
	}
	var e *btf.Enum
	if err := spec.TypeByName(enumName, &e); err != nil {
		return 0, fmt.Errorf("%w: BTF enum %s: %v", ErrUnsupported, enumName, err)
	}
	for _, v := range e.Values {
		if v.Name == value {
			return v.Value, nil
		}
	}
	return 0, fmt.Errorf("%w: BTF enum %s has no %s", ErrUnsupported, enumName, value)
}

// fields looks up several fields, stopping at the first missing one.
type fields struct{ err error }

func (fs *fields) get(structName string, path ...string) field {
	if fs.err != nil {
		return field{}
	}
	f, err := lookupField(structName, path...)
	fs.err = err
	return f
}

// scalar is get for a member that is loaded: a struct there is an error.
func (fs *fields) scalar(structName string, path ...string) field {
	f := fs.get(structName, path...)
	if fs.err == nil && f.size == asm.InvalidSize {
		fs.err = fmt.Errorf("%w: BTF %s.%v is %d bytes, not a scalar", ErrUnsupported, structName, path, f.bytes)
	}
	return f
}

// loadTracing loads a tracing program (an iterator) through a collection
// so that the attach-target lookup reuses btfCache instead of decoding the
// kernel's BTF again for every load.
func loadTracing(ps *ebpf.ProgramSpec, spec *btf.Spec) (*ebpf.Program, error) {
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{ps.Name: ps}},
		ebpf.CollectionOptions{Cache: sharedCache(), Programs: ebpf.ProgramOptions{KernelTypes: spec}})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(ps.Name), nil
}

// loadIter loads a tracing program for the iterator target ("tcp",
// "task_file") and attaches it; what names the program in errors.
func loadIter(name, target string, insns asm.Instructions, what string, spec *btf.Spec) (*ebpf.Program, *link.Iter, error) {
	prog, err := loadTracing(&ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceIter,
		AttachTo:     target,
		Instructions: insns,
		License:      license,
	}, spec)
	if err != nil {
		return nil, nil, loadErr("load the "+what, iterCaps, err)
	}
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		prog.Close()
		return nil, nil, loadErr("attach the "+what, iterCaps, err)
	}
	return prog, it, nil
}

// ReleaseBTF drops the decoded kernel BTF (about 12 MB of heap); the next
// lookup or load decodes it again. A caller that keeps its programs loaded
// calls it once they are.
func ReleaseBTF() {
	kernel.Lock()
	defer kernel.Unlock()
	kernel.path, kernel.spec = "", nil
	btfCache = btf.NewCache()
}

func sharedCache() *btf.Cache {
	kernel.Lock()
	defer kernel.Unlock()
	return btfCache
}

// kfuncCast returns the kernel BTF ids of the bpf_rdonly_cast kfunc
// (Linux 6.2+) and of struct structName, or ok false when the kernel has
// no such kfunc. A pointer the verifier cannot trust, such as a struct
// socket's sk, may be read only as the type it was loaded as; the cast
// lets a program read it as the struct tcp_sock it is.
func kfuncCast(structName string) (fn, typ btf.TypeID, ok bool) {
	spec, err := kernelSpec()
	if err != nil {
		return 0, 0, false
	}
	var f *btf.Func
	var s *btf.Struct
	if spec.TypeByName("bpf_rdonly_cast", &f) != nil || spec.TypeByName(structName, &s) != nil {
		return 0, 0, false
	}
	fn, err1 := spec.TypeID(f)
	typ, err2 := spec.TypeID(s)
	return fn, typ, err1 == nil && err2 == nil
}
