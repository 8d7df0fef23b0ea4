package inspect

import kproc "github.com/kadiag/kadiag/internal/proc"

// privHint says how to obtain the capabilities caps (e.g. "CAP_SYS_PTRACE")
// for the user kadiag runs as. Root that lacks one (a container, a bounding
// set) is told which, never to "run as root".
func privHint(caps string) string {
	if kproc.IsRoot() {
		return "kadiag runs as root without " + caps + " (dropped by its container or capability bounding set): grant it, see docs/privileges.md"
	}
	return "run as root, or grant " + caps + ": see docs/privileges.md"
}
