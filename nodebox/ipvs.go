package nodebox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cloudflare/ipvs"
	"golang.org/x/sys/unix"
)

// ipvsTimeout reads the IPVS TCP timeout of the calling thread's
// namespace, as `ipvsadm -l --timeout` shows it, when IPVS has at least one
// virtual service there (without one, nothing is balanced and nothing is
// forgotten by IPVS). A kernel without IPVS has none: zero, no error.
func ipvsTimeout() (time.Duration, error) {
	c, err := ipvs.New()
	if err != nil {
		if noIPVS(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("IPVS over netlink: %w", err)
	}
	if cl, ok := c.(io.Closer); ok {
		defer cl.Close()
	}
	svcs, err := c.Services()
	if err != nil {
		return 0, fmt.Errorf("IPVS services: %w", err)
	}
	if len(svcs) == 0 {
		return 0, nil
	}
	cfg, err := c.Config()
	if err != nil {
		return 0, fmt.Errorf("IPVS timeouts: %w", err)
	}
	return time.Duration(cfg.TCPTimeout) * time.Second, nil
}

// noIPVS: the generic netlink family "IPVS" does not exist (no ip_vs
// module, or none built into the kernel).
func noIPVS(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)
}
