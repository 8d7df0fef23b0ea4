package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netns"

	knetns "github.com/kadiag/kadiag/internal/netns"
)

// inNetns runs f on a fresh OS thread inside ns (internal/netns.Do).
func inNetns(ns netns.NsHandle, f func() error) error { return knetns.Do(ns, f) }

// newNetns creates an unnamed network namespace: it lives exactly as long as
// the returned fd and the processes kadiag starts in it, so a killed kadiag
// leaves nothing behind.
func newNetns() (netns.NsHandle, error) { return knetns.New() }

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
