// Command kadiag finds, proves and fixes long-idle TCP connections that a NAT
// gateway, load balancer or conntrack table silently forgets.
//
// Exit codes: 0 ok, 1 a check failed, 2 an error.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1
	exitError  = 2
)

// errCheckFailed is returned by a command whose report was written and whose
// check did not pass: kadiag exits 1 without printing anything more.
var errCheckFailed = errors.New("check failed")

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errCheckFailed):
		return exitFailed
	}
	// One line, always: the problem and, where known, the fix.
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	if hint := capabilityHint(cmd, err, msg); hint != "" {
		msg += "; " + hint
	}
	fmt.Fprintf(os.Stderr, "kadiag: %s\n", msg)
	return exitError
}
