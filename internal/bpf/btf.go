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
