package inspect

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// fdSocket is one descriptor of a process that refers to a socket.
type fdSocket struct {
	fd    int
	inode uint64
}

// procErr turns a procfs error about pid into one of the package's errors.
func procErr(pid int, what string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("pid %d: %s: %w (run as root, or as the process's own user)", pid, what, ErrPermission)
	}
	return fmt.Errorf("pid %d: %s: %w", pid, what, err)
}

// comm returns the process's command name.
func comm(pid int) (string, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "", procErr(pid, "read comm", err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
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
// numbers. It reads each fd link with readlinkat on one open directory, with
// one buffer, because --all and the exporter call it for every process.
func socketFDs(pid int, out []fdSocket) ([]fdSocket, error) {
	dir, err := os.Open(procRoot + "/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return out, procErr(pid, "list descriptors", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return out, procErr(pid, "list descriptors", err)
	}
	dfd := int(dir.Fd())
	var buf [64]byte
	const prefix = "socket:["
	for _, name := range names {
		n, err := unix.Readlinkat(dfd, name, buf[:])
		if err != nil {
			// The descriptor was closed since the listing: not ours to report.
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return out, procErr(pid, "read descriptor "+name, err)
		}
		link := buf[:n]
		if n <= len(prefix)+1 || string(link[:len(prefix)]) != prefix || link[n-1] != ']' {
			continue
		}
		ino, ok := parseUint(link[len(prefix) : n-1])
		fd, ok2 := parseUint([]byte(name))
		if !ok || !ok2 {
			continue
		}
		out = append(out, fdSocket{fd: int(fd), inode: ino})
	}
	return out, nil
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
