package exporter

import "github.com/kadiag/kadiag/preload"

// preloadMapped reports whether kadiag's preload library is mapped into the
// process; a process whose maps cannot be read counts as not mapped.
func preloadMapped(pid int) bool {
	ok, _ := preload.Mapped(pid)
	return ok
}

// procRoot is where procfs is mounted.
const procRoot = "/proc"
