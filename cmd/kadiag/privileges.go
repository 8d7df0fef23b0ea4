package main

import (
	"errors"
	"github.com/prometheus/procfs"
	"io/fs"
	"os"
	"strings"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/simulate"
	"github.com/spf13/cobra"
)

// capability is one Linux capability kadiag may need (docs/privileges.md).
type capability struct {
	name string // CAP_SYS_PTRACE
	bit  uint   // its number in the capability sets of /proc/self/status
}

var (
	capDACReadSearch = capability{"CAP_DAC_READ_SEARCH", 2}
	capNetAdmin      = capability{"CAP_NET_ADMIN", 12}
	capNetRaw        = capability{"CAP_NET_RAW", 13}
	capSysPtrace     = capability{"CAP_SYS_PTRACE", 19}
	capSysAdmin      = capability{"CAP_SYS_ADMIN", 21}
)

// neededCaps is what the command, in the mode its flags chose, needs
// beyond an ordinary user's rights (the table in docs/privileges.md).
func neededCaps(cmd *cobra.Command, msg string) []capability {
	changed := func(name string) bool { return cmd.Flags().Lookup(name) != nil && cmd.Flags().Changed(name) }
	switch cmd.CommandPath() {
	case "kadiag sockets":
		if changed("netns") {
			return []capability{capSysAdmin}
		}
		// Another user's /proc/PID/fd is mode 0500 (a DAC check), its
		// entries, ns/net and pidfd_getfd are ptrace-mode checks; setns
		// only when the process lives in another network namespace.
		c := []capability{capSysPtrace, capDACReadSearch}
		if strings.Contains(msg, "enter network namespace") || changed("all") {
			c = append(c, capSysAdmin)
		}
		return c
	case "kadiag capture":
		switch {
		case changed("pid"):
			return []capability{capNetRaw, capSysAdmin, capSysPtrace, capDACReadSearch}
		case changed("netns"):
			return []capability{capNetRaw, capSysAdmin}
		}
	case "kadiag preload check":
		// Its sockets are read like kadiag sockets --pid reads them.
		c := []capability{capSysPtrace, capDACReadSearch}
		if strings.Contains(msg, "enter network namespace") {
			c = append(c, capSysAdmin)
		}
		return c
	case "kadiag simulate":
		return []capability{capSysAdmin, capNetAdmin, capNetRaw}
	}
	return nil
}

// effectiveCaps reads this process's effective capability set.
func effectiveCaps() uint64 {
	p, err := procfs.Self()
	if err != nil {
		return 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return st.CapEff
}

// capabilityHint turns a permission error of cmd into the capabilities
// missing for it and how to grant them, in words that fit on the error's one line; ""
// when the error is something else or nothing is missing (a file mode,
// not a privilege, said no).
func capabilityHint(cmd *cobra.Command, err error, msg string) string {
	// Some libraries (gopacket's afpacket) flatten the errno into text.
	denied := errors.Is(err, fs.ErrPermission) || errors.Is(err, inspect.ErrPermission) ||
		errors.Is(err, simulate.ErrNotPrivileged) ||
		strings.Contains(msg, "operation not permitted") || strings.Contains(msg, "permission denied")
	if cmd == nil || !denied {
		return ""
	}
	want := neededCaps(cmd, msg)
	have := effectiveCaps()
	var names, lower []string
	for _, c := range want {
		if have&(1<<c.bit) == 0 {
			names = append(names, c.name)
			lower = append(lower, strings.ToLower(c.name))
		}
	}
	if len(names) == 0 {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		exe = "$(command -v kadiag)"
	}
	return "missing " + strings.Join(names, ", ") + ": run as root, or grant " + pronoun(len(names)) +
		" with 'sudo setcap " + strings.Join(lower, ",") + "+ep " + exe + "' (see docs/privileges.md)"
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
