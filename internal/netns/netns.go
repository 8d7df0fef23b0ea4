// Package netns is the one place in kadiag that switches network
// namespaces. setns(2) changes only the calling OS thread, so every switch
// happens on a fresh goroutine locked to its own thread; the caller's
// goroutine and thread never leave their namespace. When the thread cannot
// be switched back, its goroutine ends still locked and the Go runtime
// destroys the thread instead of reusing it in a foreign namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrRestore wraps the error of switching a thread back to its own
// namespace. The thread was discarded; the work itself may have run.
var ErrRestore = errors.New("restore network namespace")

// Do runs fn on a fresh OS thread inside ns and returns fn's error. The
// thread switches back before it returns to the runtime's pool, or is
// discarded. fn must not start goroutines that rely on the namespace: only
// fn's own thread is inside it.
func Do(ns vns.NsHandle, fn func() error) error {
	return onFreshThread(func() (bool, error) {
		if err := vns.Set(ns); err != nil {
			return true, fmt.Errorf("enter network namespace: %w", err)
		}
		return false, fn()
	})
}

// New creates an unnamed network namespace and returns a handle to it.
// Nothing in /run/netns names it: it lives exactly as long as its handles
// and the processes inside it, so a killed kadiag leaves nothing behind.
func New() (vns.NsHandle, error) {
	var h vns.NsHandle
	err := onFreshThread(func() (bool, error) {
		var err error
		h, err = vns.New() // unshare: this thread is now in the new namespace
		if err != nil {
			return true, fmt.Errorf("create network namespace: %w", err)
		}
		return false, nil
	})
	if err != nil && h.IsOpen() {
		h.Close()
		return vns.None(), err
	}
	return h, err
}

// NewNamed creates a network namespace bound at /run/netns/name (as
// `ip netns add` does). Tests use it so that oracles such as `ip netns exec`
// can enter the namespace by name.
func NewNamed(name string) (vns.NsHandle, error) {
	var h vns.NsHandle
	err := onFreshThread(func() (bool, error) {
		var err error
		h, err = vns.NewNamed(name)
		if err != nil {
			return true, fmt.Errorf("create network namespace %s: %w", name, err)
		}
		return false, nil
	})
	if err != nil && h.IsOpen() {
		h.Close()
		return vns.None(), err
	}
	return h, err
}

// Ino returns the inode of the calling thread's network namespace. Because
// only Do's threads ever switch, this is the namespace of the whole process
// as seen by any goroutine outside Do. It reads /proc/thread-self, not
// /proc/self, which names the main thread's namespace.
func Ino() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("stat own network namespace: %w", err)
	}
	return st.Ino, nil
}

// HandleIno returns the inode of the namespace ns refers to.
func HandleIno(ns vns.NsHandle) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0, fmt.Errorf("stat network namespace handle: %w", err)
	}
	return st.Ino, nil
}

// onFreshThread runs f on a new goroutine locked to its OS thread. f
// reports whether the thread is still in its own namespace (clean), in
// which case nothing needs restoring.
func onFreshThread(f func() (clean bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		clean, ferr := f()
		if !clean {
			if err := vns.Set(orig); err != nil {
				// Stay locked: the runtime ends this thread with the goroutine.
				errc <- errors.Join(ferr, fmt.Errorf("%w: %w", ErrRestore, err))
				return
			}
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Open opens a handle to the namespace at path (/proc/PID/ns/net, a bind
// mount under /run/netns, …).
func Open(path string) (vns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return vns.None(), &os.PathError{Op: "open", Path: path, Err: err}
	}
	return vns.NsHandle(fd), nil
}
