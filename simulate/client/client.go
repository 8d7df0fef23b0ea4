// Package client holds the lab's bundled HTTP client: a small C program,
// dynamically linked against glibc so an LD_PRELOAD library takes effect in
// it, prebuilt by build.sh for amd64 and arm64 and embedded so `go install`
// needs no C compiler.
package client

import (
	"embed"
	"errors"
	"fmt"
	"runtime"
)

//go:embed kadiag-client-amd64 kadiag-client-arm64
var builds embed.FS

// ErrNoBuild is returned (wrapped) on an architecture kadiag ships no
// client for.
var ErrNoBuild = errors.New("no bundled client for this architecture")

// Binary returns the client executable for arch (GOARCH spelling; "" is
// the running one).
func Binary(arch string) ([]byte, error) {
	if arch == "" {
		arch = runtime.GOARCH
	}
	b, err := builds.ReadFile("kadiag-client-" + arch)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (shipped: amd64, arm64)", ErrNoBuild, arch)
	}
	return b, nil
}

// Exit statuses of the client; client.c defines the same numbers.
const (
	ExitOK      = 0  // a 2xx response arrived
	ExitTimeout = 10 // nothing arrived before its -t deadline
	ExitReset   = 11 // the connection was reset
	ExitDead    = 12 // the kernel gave up on the peer (keepalive or retransmissions)
	ExitError   = 13 // anything else
	ExitStatus  = 14 // a non-2xx response
)
