package preload

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

// sanitizeFlags build the library's C source the strict way, with the
// address and undefined-behaviour sanitizers; any finding aborts the program.
var sanitizeFlags = []string{"-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
	"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"}

// sanitizerEnv makes every sanitizer finding fatal and loud. Leak checking is
// off: the programs under test (and ld.so) keep memory until exit on purpose.
var sanitizerEnv = []string{"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0",
	"UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"}

var (
	harnessOnce sync.Once
	harnessPath string
	harnessErr  error
)

// envHarness is testdata/envharness.c, which includes src/keepalive.c
// itself, running under ASan and UBSan.
type envHarness struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	errOut *bufio.Reader
}

func startHarness(t testing.TB) *envHarness {
	t.Helper()
	testenv.Need(t, "gcc")
	harnessOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kadiag-envharness-")
		if err != nil {
			harnessErr = err
			return
		}
		harnessPath = filepath.Join(dir, "envharness")
		args := append(append([]string{}, sanitizeFlags...), "-o", harnessPath, "testdata/envharness.c", "-ldl")
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			harnessErr = fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if harnessErr != nil {
		t.Fatal(harnessErr)
	}
	cmd := exec.Command(harnessPath)
	cmd.Env = sanitizerEnv
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &envHarness{cmd, in, bufio.NewReader(out), bufio.NewReader(errOut)}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("envharness exited: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	return h
}

// libConfig is the library's cfg struct as the harness prints it.
type libConfig struct {
	Active, Enforce, Debug, Idle, Intvl, Cnt, UserTimeout int
}

// run hands the harness one environment and returns the library's parsed
// configuration and everything it wrote to fd 2.
func (h *envHarness) run(t testing.TB, environ []string) (libConfig, string) {
	t.Helper()
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint32(len(environ)))
	for _, e := range environ {
		binary.Write(&buf, binary.LittleEndian, uint32(len(e)))
		buf.WriteString(e)
	}
	if _, err := h.in.Write(buf.Bytes()); err != nil {
		t.Fatalf("envharness died (sanitizer finding?) on %q: %v%s", environ, err, h.drain())
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("envharness died (sanitizer finding?) on %q: %v%s", environ, err, h.drain())
	}
	var c libConfig
	if _, err := fmt.Sscanf(line, "%d %d %d %d %d %d %d", &c.Active, &c.Enforce, &c.Debug, &c.Idle, &c.Intvl, &c.Cnt, &c.UserTimeout); err != nil {
		t.Fatalf("envharness line %q: %v", line, err)
	}
	var stderr strings.Builder
	for {
		s, err := h.errOut.ReadString('\n')
		if err != nil {
			t.Fatalf("envharness stderr on %q: %v (%q)", environ, err, stderr.String())
		}
		if strings.HasSuffix(s, "\x00end\x00\n") {
			stderr.WriteString(strings.TrimSuffix(s, "\x00end\x00\n"))
			return c, stderr.String()
		}
		stderr.WriteString(s)
	}
}

func (h *envHarness) drain() string {
	h.in.Close()
	rest, _ := io.ReadAll(h.errOut)
	return "\nstderr:\n" + string(rest)
}

// fromGo is what FromEnviron predicts, in the library's units (-1: unset).
func fromGo(environ []string) (libConfig, []Warning) {
	c, warns := FromEnviron(environ)
	or := func(v int64) int {
		if v == 0 {
			return -1
		}
		return int(v)
	}
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	return libConfig{Active: b(!c.Off), Enforce: b(!c.NoEnforce), Idle: or(int64(c.Idle / time.Second)),
		Intvl: or(int64(c.Interval / time.Second)), Cnt: or(int64(c.Count)), UserTimeout: or(c.UserTimeout.Milliseconds())}, warns
}

const warnPrefix = "libkadiag_keepalive: ignoring "

// compareWithLibrary checks FromEnviron against the library's own parser on
// one environment: the same configuration and the same warnings, in order.
func compareWithLibrary(t testing.TB, h *envHarness, environ []string) {
	t.Helper()
	lib, stderr := h.run(t, environ)
	want, warns := fromGo(environ)
	lib.Debug = 0 // FromEnviron does not report KADIAG_DEBUG
	if lib != want {
		t.Fatalf("environment %q:\nlibrary parses %+v\nFromEnviron    %+v (warnings %v)", environ, lib, want, warns)
	}
	rest := stderr
	for _, w := range warns {
		v := w.Value
		if len(v) > 64 {
			v = v[:64] // the library's line is cut at 512 bytes
		}
		i := strings.Index(rest, warnPrefix+w.Var+`="`+v)
		if i < 0 {
			t.Fatalf("environment %q: FromEnviron warns about %s=%q, the library's stderr has no such line:\n%s", environ, w.Var, w.Value, stderr)
		}
		rest = rest[i+len(warnPrefix):]
	}
	if n := strings.Count(stderr, warnPrefix); n != len(warns) && !strings.Contains(strings.Join(environ, ""), warnPrefix) {
		t.Fatalf("environment %q: the library printed %d warnings, FromEnviron predicts %v:\n%s", environ, n, warns, stderr)
	}
}

// envNames are the variables the library reads, plus near misses.
var envNames = []string{EnvIdle, EnvInterval, EnvCount, EnvUserTimeout, EnvKeepalive, EnvEnforce, EnvDebug,
	EnvBareIdle, EnvBareInterval, EnvBareCount, "KADIAG_KEEPIDL", "kadiag_keepidle", "KADIAG_KEEPIDLEX", "USER_TIMEOUT"}

// randomValue draws from the shapes people (and scripts) actually write,
// and the edges of the parser: unit suffixes, signs, blanks, leading zeros,
// numbers just inside and outside every limit, overflow, case, non-ASCII.
func randomValue(r *rand.Rand) string {
	nums := []string{"0", "1", "2", "60", "127", "128", "32767", "32768", "100000000", "100000001", "2147483",
		"2147484", "2147483647", "2147483648", "4294967296", "9223372036854775808", "99999999999999999999",
		"000000000060", "0000000000000000000001", "1000", "-5", "+5", " 5", "5 ", "1.5", "1e3", "0x10", ""}
	units := []string{"", "", "", "s", "m", "h", "ms", "S", "M", "MS", "d", "us", "sec", " s", "s ", "mss", "x"}
	flags := []string{"1", "0", "on", "off", "ON", "Off", "true", "FALSE", "yes", "No", "2", "maybe", "", " on",
		"onn", "yeſ", "İ", "TRUE\n", "o\xffn"}
	switch r.Intn(8) {
	case 0:
		return flags[r.Intn(len(flags))]
	case 1:
		b := make([]byte, r.Intn(12))
		for i := range b {
			b[i] = byte(r.Intn(256))
			if b[i] == 0 {
				b[i] = '0'
			}
		}
		return string(b)
	case 2:
		return fmt.Sprint(r.Int63n(1 << uint(r.Intn(40)+1)))
	}
	return nums[r.Intn(len(nums))] + units[r.Intn(len(units))]
}

// TestEnvParserMatchesLibrary: thousands of random environments, parsed by
// the library's own C code (under ASan and UBSan) and by FromEnviron, which
// kadiag preload check uses to predict what the library applies.
func TestEnvParserMatchesLibrary(t *testing.T) {
	h := startHarness(t)
	r := rand.New(rand.NewSource(9))
	for i := 0; i < 4000; i++ {
		var env []string
		for n := r.Intn(6); n > 0; n-- {
			name := envNames[r.Intn(len(envNames))]
			if r.Intn(20) == 0 {
				env = append(env, name) // no '=' at all
				continue
			}
			env = append(env, name+"="+randomValue(r))
		}
		compareWithLibrary(t, h, env)
	}
}

// FuzzEnvMatchesLibrary mutates environments in /proc/PID/environ form
// (NUL-separated NAME=value) and compares the library's parser with
// FromEnviron on each.
func FuzzEnvMatchesLibrary(f *testing.F) {
	for _, s := range []string{
		"KADIAG_KEEPIDLE=90s\x00KEEPIDLE=5",
		"KEEPIDLE=5m\x00KEEPINTVL=10\x00KEEPCNT=3",
		"KADIAG_USER_TIMEOUT=1500ms\x00KADIAG_ENFORCE=off",
		"KADIAG_USER_TIMEOUT=2147483s\x00KADIAG_KEEPALIVE=FALSE",
		"KADIAG_KEEPCNT=5s\x00KADIAG_DEBUG=yes",
		"KADIAG_KEEPIDLE=1\x00KADIAG_KEEPIDLE=2",
		"KADIAG_KEEPINTVL=000000000000015",
		"KADIAG_USER_TIMEOUT=150000000ms",
		"KADIAG_KEEPIDLE",
	} {
		f.Add(s)
	}
	// One harness per fuzzing process (each worker runs this function).
	h := startHarness(f)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		var env []string
		if s != "" {
			env = strings.Split(s, "\x00")
		}
		compareWithLibrary(t, h, env)
	})
}

var (
	asanLibOnce sync.Once
	asanLibPath string
	asanLibErr  error
)

// asanLibrary builds src/keepalive.c as the shared library, strict warnings
// and sanitizers on, and returns it with the ASan runtime that must be
// loaded first: LD_PRELOAD="runtime library".
func asanLibrary(t *testing.T) (runtime, lib string) {
	t.Helper()
	testenv.Need(t, "gcc")
	out, err := exec.Command("gcc", "-print-file-name=libasan.so").Output()
	runtime = strings.TrimSpace(string(out))
	if err != nil || !filepath.IsAbs(runtime) {
		t.Fatalf("gcc has no libasan.so (%q, %v): install libasan (gcc's default dependency)", out, err)
	}
	asanLibOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kadiag-asan-lib-")
		if err != nil {
			asanLibErr = err
			return
		}
		asanLibPath = filepath.Join(dir, LibraryName)
		args := append(append([]string{}, sanitizeFlags...), "-fPIC", "-shared", "-o", asanLibPath, "src/keepalive.c", "-ldl")
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			asanLibErr = fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	})
	if asanLibErr != nil {
		t.Fatal(asanLibErr)
	}
	return runtime, asanLibPath
}

// allMalformed sets every variable the library reads to a bad value at once.
var allMalformed = []string{"KADIAG_KEEPIDLE=abc", "KADIAG_KEEPINTVL=0", "KADIAG_KEEPCNT=128",
	"KADIAG_USER_TIMEOUT=-1", "KADIAG_KEEPALIVE=maybe", "KADIAG_ENFORCE=2", "KADIAG_DEBUG=please",
	// Shadowed by the KADIAG_ names above: read, never used, never warned about.
	"KEEPIDLE=1", "KEEPINTVL=1", "KEEPCNT=1"}

// TestAllMalformedAtOnce loads the shipped library, and its ASan/UBSan
// build, into a real process with every variable malformed at once: the
// process runs on, keepalive is on (the default of KADIAG_KEEPALIVE) and
// every option keeps the kernel's default; one warning per bad variable.
func TestAllMalformedAtOnce(t *testing.T) {
	bin := client(t, "gcc")
	kernel := kernelDefaults(t)
	want := opts{1, kernel.Idle, kernel.Intvl, kernel.Cnt, 0}
	addr := listen(t, "tcp4", "127.0.0.1:0")
	host, port := hostPort(t, addr)
	asanRuntime, asanLib := asanLibrary(t)
	for _, tc := range []struct{ name, preload string }{
		{"shipped", lib(t, amd64Glibc)},
		{"asan", asanRuntime + " " + asanLib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"LD_PRELOAD=" + tc.preload}, sanitizerEnv...)
			p := start(t, append(env, allMalformed...), bin, "tcp4", host, port, "_")
			inside := parseOpts(t, p.line(t))
			if inside != want {
				t.Errorf("inside the process: %v, want the kernel defaults with keepalive on: %v", inside, want)
			}
			from := outside(t, p.cmd.Process.Pid, remoteIs(addr))
			if from != want {
				t.Errorf("from outside (pidfd_getfd): %v, want %v", from, want)
			}
			p.stdin.Close()
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("process did not run on: %v; stderr:\n%s", err, p.stderr)
			}
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			if len(lines) != 7 {
				t.Errorf("want 7 warning lines, one per bad KADIAG_ variable, got:\n%s", p.stderr)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, warnPrefix+"KADIAG_") {
					t.Errorf("stderr line %q: want only the library's warnings about KADIAG_ variables", l)
				}
			}
			c, warns := FromEnviron(allMalformed)
			if len(warns) != 7 || c.Idle != 0 || c.Interval != 0 || c.Count != 0 || c.UserTimeout != 0 || c.Off || c.NoEnforce {
				t.Errorf("FromEnviron: %+v, %v", c, warns)
			}
		})
	}
}

// TestSanitizedLibrary runs the hooks under ASan and UBSan in real
// processes: configured sockets, an application weakening every option,
// sockets it must not touch, errno after failing calls, eight threads at
// once. Any sanitizer finding kills the process and fails the test.
func TestSanitizedLibrary(t *testing.T) {
	bin := client(t, "gcc")
	asanRuntime, asanLib := asanLibrary(t)
	addr := listen(t, "tcp6", "[::1]:0")
	host, port := hostPort(t, addr)
	env := append(append(cleanEnviron(), sanitizerEnv...), "KADIAG_KEEPIDLE=42", "KADIAG_KEEPINTVL=5",
		"KADIAG_KEEPCNT=3", "KADIAG_USER_TIMEOUT=1500ms", "KADIAG_DEBUG=1")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(env, "LD_PRELOAD="+asanRuntime+" "+asanLib)
		cmd.Stdin = strings.NewReader("")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || strings.Contains(stderr.String(), "Sanitizer") || strings.Contains(stderr.String(), "runtime error") {
			t.Fatalf("%v under ASan/UBSan: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	if got := run("tcp6", host, port, "_", "weaken"); !strings.Contains(got, "keepalive=1 idle=42 intvl=5 cnt=3 user_timeout=1500") {
		t.Errorf("weakening application: %q", got)
	}
	run("others")
	plain, err := exec.Command(bin, "errno").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := run("errno"); got != string(plain) {
		t.Errorf("errno with the sanitized library:\n%s\nwithout:\n%s", got, plain)
	}
	if got := strings.TrimSpace(run("threads", "300")); got != "threads keepalive=1 idle=42 bad=0" {
		t.Errorf("threads: %q", got)
	}
}
