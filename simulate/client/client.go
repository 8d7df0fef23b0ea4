// Package client holds the lab's bundled HTTP client: a small C program,
// dynamically linked against glibc so an LD_PRELOAD library takes effect in
// it, prebuilt by build.sh and embedded so `go install` needs no C compiler.
package client

import (
	_ "embed"
)

// Binary is the prebuilt kadiag-client executable (linux/amd64, glibc).
//
//go:embed kadiag-client
var Binary []byte

// Exit statuses of the client; client.c defines the same numbers.
const (
	ExitOK      = 0  // a 2xx response arrived
	ExitTimeout = 10 // nothing arrived before its -t deadline
	ExitReset   = 11 // the connection was reset
	ExitDead    = 12 // the kernel gave up on the peer (keepalive or retransmissions)
	ExitError   = 13 // anything else
	ExitStatus  = 14 // a non-2xx response
)
