package doctor

import (
	"debug/buildinfo"
	"fmt"
	"github.com/prometheus/procfs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kadiag/kadiag/preload"
)

// Runtime kinds.
const (
	KindJVM    = "jvm"
	KindGo     = "go"
	KindPython = "python"
	KindNode   = "node"
	KindNative = "native"
)

// Runtime is what the process runs, as far as the fix depends on it.
type Runtime struct {
	// Kind is jvm, go, python, node or native.
	Kind string `json:"kind"`
	// Version is the runtime's version: the JDK's JAVA_VERSION, Go's
	// toolchain, Python's; empty when unknown.
	Version string `json:"version,omitempty"`
	Exe     string `json:"exe"`
	// Libc is glibc or musl for a dynamically linked program (from its
	// PT_INTERP), empty for a static one.
	Libc       string `json:"libc,omitempty"`
	Interp     string `json:"interp,omitempty"`
	Static     bool   `json:"static"`
	SecureExec bool   `json:"secure_exec"`
	// JavaHome is the JDK/JRE the JVM was loaded from (libjvm.so's home).
	JavaHome string `json:"java_home,omitempty"`
	// Vendor is the JDK's IMPLEMENTOR from its release file.
	Vendor string `json:"vendor,omitempty"`
	// Go is the build information embedded in a Go binary.
	Go *GoBuild `json:"go,omitempty"`
}

// GoBuild is the part of a Go binary's build information that matters here.
type GoBuild struct {
	GoVersion string `json:"go_version"`
	Path      string `json:"path,omitempty"`   // the main package
	Module    string `json:"module,omitempty"` // the main module and its version
	CGO       string `json:"cgo_enabled,omitempty"`
}

// Preloadable reports whether LD_PRELOAD can reach the process's sockets:
// not in Go (raw system calls), not in static programs (no dynamic loader),
// not under secure execution (setuid, file capabilities).
func (r Runtime) Preloadable() bool {
	return r.Kind != KindGo && !r.Static && !r.SecureExec
}

// Describe names the runtime for people: "JVM 17.0.13 (Debian), glibc".
func (r Runtime) Describe() string {
	var s string
	switch r.Kind {
	case KindJVM:
		s = "JVM"
		if r.Version != "" {
			s += " " + r.Version
		}
		if r.Vendor != "" {
			s += " (" + r.Vendor + ")"
		}
	case KindGo:
		s = "Go program"
		if r.Version != "" {
			s += " built with " + r.Version
		}
	case KindPython:
		s = "Python"
		if r.Version != "" {
			s += " " + r.Version
		}
	case KindNode:
		s = "Node.js"
	default:
		s = "native program"
	}
	switch {
	case r.Static:
		s += ", statically linked"
	case r.Libc != "":
		s += ", " + r.Libc
	}
	if r.SecureExec {
		s += ", secure-execution (setuid or file capabilities)"
	}
	return s
}

var pythonVersion = regexp.MustCompile(`python(\d+\.\d+)`)

// detectRuntime names the runtime from the executable, its build
// information and the libraries it has mapped. b is preload.Check's view of
// the binary (loader, libc, static, Go version, secure execution).
func detectRuntime(pid int, b preload.Binary) Runtime {
	proc := fmt.Sprintf("/proc/%d", pid)
	r := Runtime{Kind: KindNative, Exe: b.Path, Libc: string(b.Libc), Interp: b.Interp, Static: b.Static,
		SecureExec: b.Setuid || b.FileCaps || b.SecureExec}
	if r.Static {
		r.Libc = ""
	}
	// The executable through /proc/PID/exe: the right file even in another
	// mount namespace or when it was replaced on disk.
	if bi, err := buildinfo.ReadFile(proc + "/exe"); err == nil {
		r.Kind, r.Version = KindGo, bi.GoVersion
		g := &GoBuild{GoVersion: bi.GoVersion, Path: bi.Path}
		if bi.Main.Path != "" {
			g.Module = bi.Main.Path + "@" + bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" {
				g.CGO = s.Value
			}
		}
		r.Go = g
		return r
	}
	maps := mappedFiles(pid)
	for _, m := range maps {
		if filepath.Base(m) == "libjvm.so" {
			r.Kind = KindJVM
			r.JavaHome, r.Version, r.Vendor = javaRelease(proc, m)
			return r
		}
	}
	base := filepath.Base(b.Path)
	switch {
	case strings.HasPrefix(base, "python"):
		r.Kind = KindPython
	case base == "node" || base == "nodejs":
		r.Kind = KindNode
		return r
	default:
		for _, m := range maps {
			if strings.HasPrefix(filepath.Base(m), "libpython") {
				r.Kind = KindPython
			}
		}
	}
	if r.Kind == KindPython {
		if m := pythonVersion.FindStringSubmatch(base); m != nil {
			r.Version = m[1]
		}
		for _, lib := range maps {
			if m := pythonVersion.FindStringSubmatch(filepath.Base(lib)); m != nil && r.Version == "" {
				r.Version = m[1]
			}
		}
	}
	return r
}

// mappedFiles lists the files mapped into the process, each once.
func mappedFiles(pid int) []string {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil
	}
	maps, err := p.ProcMaps()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range maps {
		path := m.Pathname
		if !strings.HasPrefix(path, "/") || seen[path] {
			continue
		}
		seen[path] = true
		out = append(out, path)
	}
	return out
}

// javaRelease finds the JDK's release file above libjvm.so (lib/server/ in
// JDK 9+, jre/lib/ARCH/server/ in JDK 8) through the process's root, so a
// JVM in a container is read from its own image, and returns the java home,
// JAVA_VERSION and IMPLEMENTOR. Nothing is executed.
func javaRelease(proc, libjvm string) (home, version, vendor string) {
	dir := filepath.Dir(libjvm)
	for range 5 {
		dir = filepath.Dir(dir)
		b, err := os.ReadFile(filepath.Join(proc, "root", dir, "release"))
		if err != nil {
			continue
		}
		home = dir
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch k {
			case "JAVA_VERSION":
				version = v
			case "IMPLEMENTOR":
				vendor = v
			}
		}
		return home, version, vendor
	}
	// No release file (a trimmed JRE): the home is what lib/server hangs off.
	return filepath.Dir(filepath.Dir(filepath.Dir(libjvm))), "", ""
}

func splitPreload(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' })
}

func baseName(p string) string { return filepath.Base(p) }
