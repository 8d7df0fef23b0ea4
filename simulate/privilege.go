package simulate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrNotPrivileged is returned when kadiag may not build namespaces.
var ErrNotPrivileged = errors.New("kadiag simulate needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW) to build its network namespaces and capture in them: run it with sudo")

// checkPrivilege reads the effective capabilities instead of the uid, so a
// container given CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN works and a root without
// them gets the one-line answer rather than an EPERM from deep inside.
func checkPrivilege() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("read capabilities: %w", err)
		}
		// CAP_NET_RAW: every lab captures its client links (AF_PACKET).
		const netAdmin, netRaw, sysAdmin = 1 << 12, 1 << 13, 1 << 21
		if caps&netAdmin == 0 || caps&netRaw == 0 || caps&sysAdmin == 0 {
			return ErrNotPrivileged
		}
		return nil
	}
	return ErrNotPrivileged
}
