package main

import "errors"

// preloadLibrary returns the bundled keepalive library: glibc's build for
// the bundled (glibc) client, the host's libc otherwise.
func preloadLibrary(forBundledClient bool) ([]byte, error) {
	return nil, errors.New("the bundled keepalive library is not in this build yet")
}
