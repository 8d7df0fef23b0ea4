package preload

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/prometheus/procfs"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/label"
	kproc "github.com/kadiag/kadiag/internal/proc"
	"golang.org/x/sys/unix"
)

// CheckSchema names the JSON contract of CheckResult.
const CheckSchema = "kadiag.preload.check/v1"

// ErrNoProcess is returned (wrapped in a *proc.PIDError) by Check for a pid
// that does not exist. It is proc.ErrNoProcess, the module's one value.
var ErrNoProcess = kproc.ErrNoProcess

// Binary describes the program a process runs, as far as LD_PRELOAD cares.
type Binary struct {
	Path       string `json:"path"`
	Interp     string `json:"interp,omitempty"` // PT_INTERP: the dynamic loader
	Libc       Libc   `json:"libc,omitempty"`   // from the loader's name
	Static     bool   `json:"static"`
	GoVersion  string `json:"go_version,omitempty"`
	Setuid     bool   `json:"setuid"`
	FileCaps   bool   `json:"file_caps"`
	SecureExec bool   `json:"secure_exec"` // AT_SECURE from the process's auxv
}

// Loaded describes the library's presence in the process.
type Loaded struct {
	Preload string `json:"ld_preload,omitempty"` // LD_PRELOAD as the process started with it
	Mapped  bool   `json:"mapped"`
	Path    string `json:"path,omitempty"` // as mapped, from /proc/PID/maps
	Libc    Libc   `json:"libc,omitempty"` // the build's libc
}

// SocketCheck is one TCP socket compared with the library's configuration.
type SocketCheck struct {
	Socket
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// CheckResult answers: does the preload library work in this process?
type CheckResult struct {
	Schema    string        `json:"schema"`
	PID       int           `json:"pid"`
	Comm      string        `json:"comm"`
	Binary    Binary        `json:"binary"`
	Library   Loaded        `json:"library"`
	Config    Config        `json:"config"`
	Warnings  []Warning     `json:"warnings,omitempty"`
	Sockets   []SocketCheck `json:"sockets"`
	Effective bool          `json:"effective"`
	// Reasons say why the library is not effective, Advice what to do;
	// Notes are facts worth knowing either way.
	Reasons []string `json:"reasons,omitempty"`
	Advice  []string `json:"advice,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// Check inspects a running process: the program it runs (Go, static,
// setuid, which libc), whether libkadiag_keepalive is mapped, the settings
// its environment gives the library, and whether its TCP sockets carry
// them. Reading sockets and another user's environment needs root or
// CAP_SYS_PTRACE.
func Check(pid int) (*CheckResult, error) {
	return check(pid, nil)
}

// CheckSockets is Check on sockets the caller read (SocketsOf), so the
// verdict and the caller's own report rest on one reading of them.
func CheckSockets(pid int, socks []Socket) (*CheckResult, error) {
	if socks == nil {
		socks = []Socket{}
	}
	return check(pid, socks)
}

// check reads the sockets itself when socks is nil.
func check(pid int, socks []Socket) (*CheckResult, error) {
	proc := fmt.Sprintf("/proc/%d", pid)
	if _, err := os.Stat(proc); err != nil {
		return nil, kproc.Errorf(pid, "%w", ErrNoProcess)
	}
	r := &CheckResult{Schema: CheckSchema, PID: pid, Sockets: []SocketCheck{}}
	if b, err := os.ReadFile(proc + "/comm"); err == nil {
		r.Comm = label.Clean(strings.TrimSuffix(string(b), "\n"))
	}
	var err error
	if r.Binary, err = readBinary(pid); err != nil {
		return nil, err
	}
	environ, err := readEnviron(pid)
	if err != nil {
		return nil, err
	}
	for _, e := range environ {
		if v, ok := strings.CutPrefix(e, EnvPreload+"="); ok {
			r.Library.Preload = v
		}
	}
	r.Config, r.Warnings = FromEnviron(environ)
	if r.Library.Mapped, r.Library.Path, err = mapped(pid, r.Library.Preload); err != nil {
		return nil, err
	}
	libPath := r.Library.Path
	if libPath == "" {
		libPath = preloadEntry(r.Library.Preload)
	}
	if libPath != "" {
		r.Library.Libc = libcOfLibrary(filepath.Join(proc, "root", libPath))
	}
	if socks == nil {
		if socks, err = TCPSockets(pid); err != nil {
			return nil, err
		}
	}
	for _, s := range socks {
		r.Sockets = append(r.Sockets, judge(s, r.Config))
	}
	r.verdict()
	return r, nil
}

// judge says whether s carries at least the protection c asks for: the
// application may have chosen shorter timings itself.
func judge(s Socket, c Config) SocketCheck {
	sc := SocketCheck{Socket: s, OK: true}
	var p []string
	if !s.Keepalive {
		p = append(p, "keepalive off")
	}
	if s.Source != "" && !inspect.Source(s.Source).IsExact() {
		// Inferred timings are estimates from the kernel's timer: only the
		// keepalive switch itself is certain.
		if len(p) > 0 {
			sc.OK, sc.Problem = false, p[0]
		}
		return sc
	}
	if c.Idle != 0 && s.Idle > c.Idle {
		p = append(p, fmt.Sprintf("idle %v, configured %v", s.Idle, c.Idle))
	}
	if c.Interval != 0 && s.Interval > c.Interval {
		p = append(p, fmt.Sprintf("interval %v, configured %v", s.Interval, c.Interval))
	}
	if c.Count != 0 && s.Count > c.Count {
		p = append(p, fmt.Sprintf("count %d, configured %d", s.Count, c.Count))
	}
	if c.UserTimeout != 0 && !s.NoUserTimeout && (s.UserTimeout == 0 || s.UserTimeout > c.UserTimeout) {
		p = append(p, fmt.Sprintf("user timeout %v, configured %v", s.UserTimeout, c.UserTimeout))
	}
	if len(p) > 0 {
		sc.OK = false
		sc.Problem = strings.Join(p, "; ")
	}
	return sc
}

func (r *CheckResult) verdict() {
	b, l := r.Binary, r.Library
	why := func(reason, advice string) {
		r.Reasons = append(r.Reasons, reason)
		if advice != "" {
			r.Advice = append(r.Advice, advice)
		}
	}
	switch {
	case b.GoVersion != "":
		why(fmt.Sprintf("a Go program (%s): Go makes socket system calls itself, so LD_PRELOAD has no effect", b.GoVersion),
			"Go turns keepalive on by default (15s since Go 1.13); if it is off or too slow, set net.Dialer.KeepAlive or KeepAliveConfig in the program, and check with 'kadiag sockets --pid'; "+r.fixAdvice())
	case b.Static:
		why("a statically linked program (no PT_INTERP): the dynamic loader that honours LD_PRELOAD never runs",
			r.fixAdvice()+"; or use a dynamically linked build, turn keepalive on in the application, or set the net.ipv4.tcp_keepalive_* sysctls of its network namespace (timings only: they do not turn SO_KEEPALIVE on)")
	case l.Preload == "":
		why("LD_PRELOAD is not set in the process's environment",
			"start the process with the environment from 'kadiag preload env' (the library cannot enter a running process); without a restart: "+r.fixAdvice())
	case !l.Mapped && (b.SecureExec || b.Setuid || b.FileCaps):
		why("a setuid, setgid or file-capability program runs in secure-execution mode: ld.so ignores LD_PRELOAD paths with a slash outside its trusted directories",
			r.fixAdvice()+"; or install the library in a trusted system directory (e.g. /lib/x86_64-linux-gnu) with the set-user-ID bit and name it without a path, or turn keepalive on in the application")
	case !l.Mapped && b.Libc != "" && l.Libc != "" && b.Libc != l.Libc:
		why(fmt.Sprintf("libc mismatch: the process uses %s, LD_PRELOAD names a %s build", b.Libc, l.Libc),
			fmt.Sprintf("extract the matching build with 'kadiag preload extract --libc %s'", b.Libc))
	case !l.Mapped:
		why(fmt.Sprintf("LD_PRELOAD=%s but the library is not mapped", l.Preload), r.unmappedAdvice())
	case r.Config.Off:
		why("KADIAG_KEEPALIVE=off: the library is loaded but inert", "unset KADIAG_KEEPALIVE and restart the process")
	}
	if l.Mapped && b.Libc != "" && l.Libc != "" && b.Libc != l.Libc {
		r.Notes = append(r.Notes, fmt.Sprintf("the %s process loaded the %s build; use 'kadiag preload extract --libc %s'", b.Libc, l.Libc, b.Libc))
	}
	for _, w := range r.Warnings {
		r.Notes = append(r.Notes, fmt.Sprintf("%s=%q is invalid: the library warned and left that setting at the kernel default", w.Var, w.Value))
	}
	bad := 0
	for _, s := range r.Sockets {
		if !s.OK {
			bad++
		}
	}
	if len(r.Reasons) == 0 && bad > 0 {
		why(fmt.Sprintf("%d of %d TCP sockets do not carry the configured keepalive values", bad, len(r.Sockets)),
			"sockets opened before the library was loaded, or created without libc's socket() (raw system calls), are not managed; restart the process with the library, or set KADIAG_ENFORCE=1 if the application turns keepalive off itself")
	}
	if len(r.Reasons) == 0 && len(r.Sockets) == 0 {
		r.Notes = append(r.Notes, "the library is loaded and configured; the process has no TCP sockets to verify yet")
	}
	for _, s := range r.Sockets {
		if s.Source != "" && !inspect.Source(s.Source).IsExact() {
			r.Notes = append(r.Notes, "socket timings were inferred from kernel timers, not read exactly: run as root (or with CAP_SYS_PTRACE) for exact values")
			break
		}
	}
	r.Notes = append(r.Notes, "the environment shown is the one the process started with (/proc/PID/environ)")
	r.Effective = len(r.Reasons) == 0
}

// fixAdvice points at kadiag fix, which needs neither LD_PRELOAD nor a
// restart.
func (r *CheckResult) fixAdvice() string {
	return fmt.Sprintf("'kadiag fix --pid %d' sets keepalive on the sockets it holds now and 'kadiag fix --pid %d --cgroup-of' on every connection its cgroup opens (docs/fix.md)", r.PID, r.PID)
}

func (r *CheckResult) unmappedAdvice() string {
	entry := preloadEntry(r.Library.Preload)
	switch {
	case entry == "":
		return "LD_PRELOAD names no libkadiag_keepalive.so; use the value from 'kadiag preload env'"
	case !strings.Contains(entry, "/"):
		return "a library name without a slash is searched in system paths only: give the absolute path"
	}
	if _, err := os.Stat(filepath.Join(fmt.Sprintf("/proc/%d/root", r.PID), entry)); err != nil {
		return fmt.Sprintf("%s does not exist in the process's filesystem: extract it there with 'kadiag preload extract'", entry)
	}
	return "the loader could not load it (see the process's stderr at start); check the architecture and libc with 'kadiag preload extract --libc/--arch'"
}

// preloadEntry picks the kadiag library from an LD_PRELOAD value (entries
// separated by colons or spaces), or the first entry.
func preloadEntry(v string) string {
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' })
	for _, e := range f {
		if strings.Contains(filepath.Base(e), "kadiag_keepalive") {
			return e
		}
	}
	return ""
}

func readBinary(pid int) (Binary, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	var b Binary
	b.Path, _ = os.Readlink(exe)
	f, err := os.Open(exe)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return b, kproc.Errorf(pid, "%w (or it is a kernel thread)", ErrNoProcess)
		}
		return b, fmt.Errorf("read the program of pid %d: %w (needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", pid, err)
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return b, fmt.Errorf("program of pid %d (%s) is not ELF: %w", pid, b.Path, err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			buf := make([]byte, p.Filesz)
			if _, err := p.ReadAt(buf, 0); err == nil {
				b.Interp = string(bytes.TrimRight(buf, "\x00"))
			}
		}
	}
	b.Static = b.Interp == ""
	switch {
	case strings.Contains(b.Interp, "ld-musl"):
		b.Libc = Musl
	case strings.Contains(b.Interp, "ld-linux"):
		b.Libc = Glibc
	}
	if bi, err := buildinfo.Read(f); err == nil {
		b.GoVersion = bi.GoVersion
	}
	if fi, err := f.Stat(); err == nil {
		b.Setuid = fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0
	}
	if n, err := unix.Getxattr(exe, "security.capability", nil); err == nil && n > 0 {
		b.FileCaps = true
	}
	b.SecureExec = atSecure(pid)
	return b, nil
}

// atSecure reads AT_SECURE from the process's auxiliary vector: the
// loader's own decision to run in secure-execution mode.
func atSecure(pid int) bool {
	aux, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid))
	if err != nil {
		return false
	}
	for i := 0; i+16 <= len(aux); i += 16 {
		k := binary.NativeEndian.Uint64(aux[i:])
		v := binary.NativeEndian.Uint64(aux[i+8:])
		if k == 23 { // AT_SECURE
			return v != 0
		}
	}
	return false
}

func readEnviron(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, fmt.Errorf("environment of pid %d: %w (needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", pid, err)
	}
	var env []string
	for _, e := range bytes.Split(b, []byte{0}) {
		if len(e) > 0 {
			env = append(env, string(e))
		}
	}
	return env, nil
}

// mapped looks for the library in /proc/PID/maps: any file named like ours,
// or the exact LD_PRELOAD entry.
func mapped(pid int, preload string) (bool, string, error) {
	maps, err := procMaps(pid)
	if err != nil {
		return false, "", fmt.Errorf("maps of pid %d: %w (needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", pid, err)
	}
	entry := preloadEntry(preload)
	for _, m := range maps {
		path := m.Pathname
		if path == "" {
			continue
		}
		if strings.HasPrefix(filepath.Base(path), "libkadiag_keepalive") || (entry != "" && path == entry) {
			return true, strings.TrimSuffix(path, " (deleted)"), nil
		}
	}
	return false, "", nil
}

// procMaps reads /proc/PID/maps with prometheus/procfs.
func procMaps(pid int) ([]*procfs.ProcMap, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, err
	}
	return p.ProcMaps()
}

// libcOfLibrary tells a glibc build (needs libc.so.6) from a musl build
// (needs libc.so) of a shared library.
func libcOfLibrary(path string) Libc {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	needed, _ := f.ImportedLibraries()
	for _, n := range needed {
		switch {
		case n == "libc.so.6":
			return Glibc
		case n == "libc.so" || strings.HasPrefix(n, "libc.musl"):
			return Musl
		}
	}
	return ""
}

// Seconds renders a duration for tables the way the library's settings are
// written.
func Seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
