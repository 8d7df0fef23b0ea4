package main

import (
	"fmt"

	"github.com/kadiag/kadiag/preload"
)

// preloadLibrary returns the bundled keepalive library: glibc's build for
// the bundled client (a glibc program), the host's libc's otherwise.
func preloadLibrary(forBundledClient bool) ([]byte, error) {
	libc := preload.Auto
	if forBundledClient {
		libc = preload.Glibc
	}
	t, err := preload.Resolve(libc, "")
	if err != nil {
		return nil, fmt.Errorf("keepalive library: %w", err)
	}
	return preload.Library(t)
}
