package sockfd

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func socket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestDupRechecksIdentity duplicates descriptors of this very process
// (pidfd_getfd on oneself needs no privilege) and reuses a number between
// the listing and the duplication, as a target process may.
func TestDupRechecksIdentity(t *testing.T) {
	pidfd, err := unix.PidfdOpen(unix.Getpid(), 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)

	a, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := inode(t, a)
	nfd, err := Dup(pidfd, a, listed)
	if err != nil {
		t.Fatalf("Dup of an unchanged socket: %v", err)
	}
	if got := inode(t, nfd); got != listed {
		t.Errorf("duplicate has inode %d, want %d", got, listed)
	}
	unix.Close(nfd)

	// The number now names another socket.
	b := socket(t)
	if err := unix.Dup2(b, a); err != nil {
		t.Fatal(err)
	}
	nfd, err = Dup(pidfd, a, listed)
	var me *MismatchError
	if nfd != -1 || !errors.As(err, &me) || !errors.Is(err, ErrReused) {
		t.Fatalf("Dup after reuse: fd %d, err %v; want a *MismatchError", nfd, err)
	}
	if me.FD != a || me.Want != listed || me.Got != inode(t, b) {
		t.Errorf("mismatch %+v, want fd %d want %d got %d", me, a, listed, inode(t, b))
	}

	// And now a pipe: not a socket at all.
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if err := unix.Dup2(p[0], a); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])
	if _, err := Dup(pidfd, a, listed); !errors.As(err, &me) || me.Got != 0 {
		t.Errorf("Dup of a pipe: %v, want a mismatch with Got 0", err)
	}

	// A closed number is the kernel's EBADF, unchanged.
	unix.Close(a)
	if _, err := Dup(pidfd, a, listed); !errors.Is(err, unix.EBADF) {
		t.Errorf("Dup of a closed fd: %v, want EBADF", err)
	}
}
