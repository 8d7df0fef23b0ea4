package simulate

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// identity is who the user's command runs as.
type identity struct {
	cred *syscall.Credential // nil: kadiag's own (root)
	env  []string            // HOME, USER, LOGNAME of that user
}

// invokingUser returns the identity of the user who ran kadiag through sudo
// (SUDO_UID, SUDO_GID), so their command does not run as root just because
// building the lab needs it. keepRoot, not running as root, or no sudo
// variables: the command keeps kadiag's identity.
func invokingUser(keepRoot bool) (identity, error) {
	su, sg := os.Getenv("SUDO_UID"), os.Getenv("SUDO_GID")
	if keepRoot || os.Geteuid() != 0 || su == "" || sg == "" {
		return identity{}, nil
	}
	uid, err1 := strconv.ParseUint(su, 10, 32)
	gid, err2 := strconv.ParseUint(sg, 10, 32)
	if err1 != nil || err2 != nil {
		return identity{}, fmt.Errorf("%w: SUDO_UID=%q and SUDO_GID=%q are not numeric ids (fix the environment, or pass --keep-root to run the command as root)", ErrConfig, su, sg)
	}
	if uid == 0 {
		return identity{}, nil
	}
	id := identity{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	if u, err := user.LookupId(su); err == nil {
		// Supplementary groups as login would set them; without them the
		// command gets none rather than root's.
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
					id.cred.Groups = append(id.cred.Groups, uint32(n))
				}
			}
		}
		id.env = []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}
	}
	return id, nil
}
