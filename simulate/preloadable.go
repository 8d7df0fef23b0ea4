package simulate

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os/exec"
	"path/filepath"
)

// preloadWarning says why LD_PRELOAD cannot work on the program a user
// command runs, or "" when it can (or when the program is a script, whose
// interpreter is what counts). The library then loads into nothing, and a
// user would read "the fix does not work" into the lab's answer.
func preloadWarning(name string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	base := filepath.Base(path)
	if _, err := buildinfo.ReadFile(path); err == nil {
		return fmt.Sprintf("%s is a Go program: it makes its own system calls, so LD_PRELOAD has no effect on it (Go turns keepalive on by itself, every 15 s, unless told not to)", base)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return ""
		}
	}
	return fmt.Sprintf("%s is statically linked: LD_PRELOAD has no effect on it", base)
}
