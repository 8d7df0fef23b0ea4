package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/kadiag/kadiag/internal/label"
	kproc "github.com/kadiag/kadiag/internal/proc"
	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// fdSocket is one descriptor of a process that refers to a socket.
type fdSocket struct {
	fd    int
	inode uint64
	// From the BPF descriptor walk: the socket's namespace and its read
	// (unless full, to be found in the namespace's walk or dump), held by
	// value: 100,000 descriptors are then a few slices, not 100,000 objects.
	netns uint32
	full  bool
	e     diagEntry
}

// procErr turns a procfs error about pid into a *proc.PIDError wrapping one
// of the package's errors.
func procErr(pid int, what string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return kproc.Errorf(pid, "%w", ErrNoProcess)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return kproc.Errorf(pid, "%s: %w (%s)", what, ErrPermission, procHint())
	}
	return kproc.Errorf(pid, "%s: %w", what, err)
}

// procHint says how to get the right to read another process's /proc
// entries, for the user kadiag runs as.
func procHint() string {
	if kproc.IsRoot() {
		return "root without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH: grant them, see docs/privileges.md"
	}
	return "run as root, or as the process's own user"
}

// comm returns the process's command name.
func comm(pid int) (string, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "", procErr(pid, "read comm", err)
	}
	// Any user can set a comm to arbitrary bytes: one rule for every output.
	return label.Clean(strings.TrimSuffix(string(b), "\n")), nil
}

// netnsID returns the identity of pid's network namespace as the kernel
// prints it ("net:[4026531840]") and its inode number.
func netnsID(pid int) (string, uint64, error) {
	p := procRoot + "/" + strconv.Itoa(pid) + "/ns/net"
	if pid == 0 {
		p = procRoot + "/self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return "", 0, procErr(pid, "read network namespace", err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino), st.Ino, nil
}

// socketFDs lists the descriptors of pid that are sockets, with their inode
// numbers. --all and the exporter call it for every process on the host, so
// it reads the directory with getdents into one buffer and each link with
// readlinkat on the NUL-terminated name inside that buffer: no allocation
// per descriptor.
func socketFDs(pid int, out []fdSocket) ([]fdSocket, error) {
	dir, err := os.Open(procRoot + "/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return out, procErr(pid, "list descriptors", err)
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	dents := make([]byte, 64<<10)
	var link [64]byte
	const prefix = "socket:["
	for {
		n, err := unix.Getdents(dfd, dents)
		if err != nil {
			return out, procErr(pid, "list descriptors", err)
		}
		if n == 0 {
			return out, nil
		}
		for b := dents[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen] // NUL-terminated, then padding
			b = b[reclen:]
			end := 0
			for end < len(name) && name[end] != 0 {
				end++
			}
			fd, ok := parseUint(name[:end])
			if !ok || end == len(name) {
				continue // "." and ".."
			}
			r, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd),
				uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&link[0])), uintptr(len(link)), 0, 0)
			if errno != 0 {
				// The descriptor was closed since the listing: not ours to report.
				if errno == unix.ENOENT {
					continue
				}
				return out, procErr(pid, "read descriptor "+string(name[:end]), errno)
			}
			l := link[:r]
			if len(l) <= len(prefix)+1 || string(l[:len(prefix)]) != prefix || l[len(l)-1] != ']' {
				continue
			}
			ino, ok := parseUint(l[len(prefix) : len(l)-1])
			if !ok {
				continue
			}
			out = append(out, fdSocket{fd: int(fd), inode: ino})
		}
	}
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// allPIDs lists every process on the host.
func allPIDs() ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if v, ok := parseUint([]byte(n)); ok {
			pids = append(pids, int(v))
		}
	}
	return pids, nil
}
