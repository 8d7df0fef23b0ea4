package exporter

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// preloadLibrary is the file name stem of kadiag's LD_PRELOAD library
// (libkadiag_keepalive.so); the preload package builds it.
var preloadLibrary = []byte("libkadiag_keepalive")

// preloadMapped reports whether the process has kadiag's preload library
// mapped: the loader honoured LD_PRELOAD. Reading another process's maps
// needs the same right as reading its descriptors (CAP_SYS_PTRACE); a
// process that cannot be read counts as not mapped.
func preloadMapped(pid int) bool {
	f, err := os.Open(procRoot + "/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false
	}
	defer f.Close()
	// A JVM maps thousands of regions; scan lines without keeping them.
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// The path is the last field; only lines naming a file can match.
		i := bytes.LastIndexByte(line, '/')
		if i >= 0 && bytes.Contains(line[i:], preloadLibrary) {
			return true
		}
	}
	return false
}

// procRoot is where procfs is mounted.
const procRoot = "/proc"
