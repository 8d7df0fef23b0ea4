package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// vmlinuxPath is the kernel's own BTF. Tests point it elsewhere to see
// what a kernel without BTF gets.
var vmlinuxPath = defaultVmlinux

const defaultVmlinux = "/sys/kernel/btf/vmlinux"

var kernel struct {
	sync.Mutex
	path string
	spec *btf.Spec
}

// btfCache holds the kernel's BTF decoded once per process, for the
// program loader's attach-target lookups (loadTracing) and, at the default
// path, for kernelSpec: decoding vmlinux costs tens of ms and ~12 MB.
var btfCache = btf.NewCache()

// kernelSpec loads the kernel's BTF once per path.
func kernelSpec() (*btf.Spec, error) {
	kernel.Lock()
	defer kernel.Unlock()
	if kernel.spec != nil && kernel.path == vmlinuxPath {
		return kernel.spec, nil
	}
	if vmlinuxPath == defaultVmlinux {
		if spec, err := btfCache.Kernel(); err == nil {
			kernel.path, kernel.spec = vmlinuxPath, spec
			return spec, nil
		}
	}
	f, err := os.Open(vmlinuxPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: the kernel was built without CONFIG_DEBUG_INFO_BTF", ErrNoBTF)
		}
		return nil, fmt.Errorf("%w: %v", ErrNoBTF, err)
	}
	defer f.Close()
	spec, err := btf.LoadSpecFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoBTF, vmlinuxPath, err)
	}
	kernel.path, kernel.spec = vmlinuxPath, spec
	return spec, nil
}

// SetKernelBTFPathForTest makes the package read kernel BTF from path, so
// tests of other packages can see what a kernel without BTF gets. It
// returns a function that restores the real path.
func SetKernelBTFPathForTest(path string) (restore func()) {
	kernel.Lock()
	old := vmlinuxPath
	vmlinuxPath = path
	kernel.Unlock()
	return func() {
		kernel.Lock()
		vmlinuxPath = old
		kernel.Unlock()
	}
}

// HaveBTF reports whether the kernel exposes BTF, with the reason if not.
func HaveBTF() error {
	_, err := kernelSpec()
	return err
}

// FieldOffset returns the byte offset of a member of a kernel struct
// (members of anonymous unions and structs included), read from the
// running kernel's BTF: programs that read kernel memory must not assume
// a layout.
func FieldOffset(structName, field string) (uint32, error) {
	spec, err := kernelSpec()
	if err != nil {
		return 0, err
	}
	var s *btf.Struct
	if err := spec.TypeByName(structName, &s); err != nil {
		return 0, fmt.Errorf("BTF struct %s: %w", structName, err)
	}
	if off, ok := findMember(s.Members, field, 0); ok {
		return off, nil
	}
	return 0, fmt.Errorf("BTF struct %s has no member %s", structName, field)
}

func findMember(ms []btf.Member, name string, base uint32) (uint32, bool) {
	for _, m := range ms {
		off := base + uint32(m.Offset.Bytes())
		if m.Name == name {
			return off, true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if o, ok := findMember(t.Members, name, off); ok {
				return o, true
			}
		case *btf.Union:
			if o, ok := findMember(t.Members, name, off); ok {
				return o, true
			}
		}
	}
	return 0, false
}
