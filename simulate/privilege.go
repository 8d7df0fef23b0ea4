package simulate

import (
	"errors"
	"fmt"

	"github.com/prometheus/procfs"
)

// ErrNotPrivileged is returned when kadiag may not build namespaces.
var ErrNotPrivileged = errors.New("kadiag simulate needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW) to build its network namespaces and capture in them: run it with sudo")

// checkPrivilege reads the effective capabilities instead of the uid, so a
// container given CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN works and a root without
// them gets the one-line answer rather than an EPERM from deep inside.
func checkPrivilege() error {
	self, err := procfs.Self()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	st, err := self.NewStatus()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	// CAP_NET_RAW: every lab captures its client links (AF_PACKET).
	const netAdmin, netRaw, sysAdmin = 1 << 12, 1 << 13, 1 << 21
	if st.CapEff&netAdmin == 0 || st.CapEff&netRaw == 0 || st.CapEff&sysAdmin == 0 {
		return ErrNotPrivileged
	}
	return nil
}
