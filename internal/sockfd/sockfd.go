// Package sockfd duplicates another process's socket descriptors and checks,
// on the duplicate itself, that it is the socket that was listed.
//
// A process may close a descriptor and reuse its number for another socket
// between the moment /proc/PID/fd is read and the moment pidfd_getfd copies
// the number. Reading the copy without a check reports another socket's
// options under the listed one's name; writing to it (kadiag fix) would
// change the wrong connection. Dup compares the duplicate's inode with the
// listed one and refuses a mismatch, so every reader and writer applies the
// same rule: never use a socket whose identity was not re-checked on the
// duplicate.
package sockfd

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrReused means the descriptor number now refers to another file than
// the socket that was listed: the process closed it and reused the number.
// Test with errors.Is; the error is a *MismatchError.
var ErrReused = errors.New("descriptor number reused for another file")

// MismatchError is returned by Dup when the duplicate is not the socket
// whose inode was asked for.
type MismatchError struct {
	FD   int    // the descriptor number in the target process
	Want uint64 // the inode that was listed
	Got  uint64 // the inode of the file the number refers to now (0: not a socket)
}

func (e *MismatchError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("fd %d: %v: listed as socket:[%d], now not a socket", e.FD, ErrReused, e.Want)
	}
	return fmt.Sprintf("fd %d: %v: listed as socket:[%d], now socket:[%d]", e.FD, ErrReused, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrReused) true for a *MismatchError.
func (e *MismatchError) Is(target error) bool { return target == ErrReused }

// Dup duplicates descriptor fd of the process behind pidfd (pidfd_getfd,
// Linux 5.6+, ptrace-attach rights needed) and returns the copy only if it
// is a socket with inode wantIno. The caller owns the returned descriptor
// and must close it. Kernel errors come back unchanged (errors.Is with
// unix.EPERM, unix.ESRCH, unix.EBADF...); an identity mismatch is a
// *MismatchError, and no descriptor is left open then.
func Dup(pidfd, fd int, wantIno uint64) (int, error) {
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, err
	}
	if err := Check(nfd, fd, wantIno); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// Check verifies that the open descriptor nfd (a copy of fd in another
// process) is a socket with inode wantIno. It is Dup's re-check, for callers
// that obtained the copy otherwise.
func Check(nfd, fd int, wantIno uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(nfd, &st); err != nil {
		return err
	}
	got := st.Ino
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		got = 0
	}
	if got != wantIno || got == 0 {
		return &MismatchError{FD: fd, Want: wantIno, Got: got}
	}
	return nil
}

// NetnsIno returns the inode of the network namespace the socket nfd lives
// in (ioctl SIOCGSKNS, which needs CAP_NET_ADMIN over that namespace), or 0
// when it cannot be read. A process can hold sockets of namespaces other
// than its own: created before or after a setns, or received over a UNIX
// socket.
func NetnsIno(nfd int) uint64 {
	ns, err := unix.IoctlRetInt(nfd, unix.SIOCGSKNS)
	if err != nil {
		return 0
	}
	defer unix.Close(ns)
	var st unix.Stat_t
	if unix.Fstat(ns, &st) != nil {
		return 0
	}
	return st.Ino
}

// OpenNetns returns a descriptor of the network namespace of socket nfd
// (ioctl SIOCGSKNS); the caller closes it.
func OpenNetns(nfd int) (int, error) {
	return unix.IoctlRetInt(nfd, unix.SIOCGSKNS)
}
