package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// inNetns runs f on an OS thread switched into ns and switches it back
// before the thread returns to the runtime's pool. setns is per thread, so a
// thread that cannot be switched back stays locked: the runtime then
// discards it with its goroutine instead of reusing it in the wrong
// namespace.
func inNetns(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// newNetns creates an unnamed network namespace. Nothing in /run/netns names
// it: it lives exactly as long as the returned fd and the processes kadiag
// starts in it, so a killed kadiag leaves nothing behind.
func newNetns() (netns.NsHandle, error) {
	var ns netns.NsHandle
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	ns, err = netns.New() // unshare: the thread is now in the new namespace
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("create netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		ns.Close()
		return 0, fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

// writeSysctls sets per-namespace sysctls (keys like
// "net/ipv4/ip_forward") from a thread inside ns: no library writes them,
// and /proc/sys/net shows the namespace of the thread that opens the file.
func writeSysctls(ns netns.NsHandle, kv [][2]string) error {
	return inNetns(ns, func() error {
		for _, e := range kv {
			p := filepath.Join("/proc/sys", e[0])
			if err := os.WriteFile(p, []byte(e[1]), 0); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(e[0], "/", "."), e[1], err)
			}
		}
		return nil
	})
}

// readSysctl reads one per-namespace sysctl from a thread inside ns.
func readSysctl(ns netns.NsHandle, key string) (string, error) {
	var v []byte
	err := inNetns(ns, func() error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}
