// Package preload ships libkadiag_keepalive, an LD_PRELOAD library that turns
// TCP keepalive on in any dynamically linked process, and the logic to deploy
// it (Extract, Env) and to prove it works in a running process (Check).
//
// The libraries are built from keepalive.c by `make preload` (or
// `go generate ./preload`) and committed, so `go install` needs no C
// compiler; a test rebuilds them and fails when the committed files are stale.
package preload

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kadiag/kadiag/internal/atomicfile"
)

//go:generate make -C .. preload

//go:embed lib/amd64-glibc/libkadiag_keepalive.so lib/amd64-musl/libkadiag_keepalive.so lib/arm64-glibc/libkadiag_keepalive.so
var libs embed.FS

// LibraryName is the file name of the library for every target.
const LibraryName = "libkadiag_keepalive.so"

// Libc names a C library the preload library is built against. A library
// built for one does not load into a process of the other.
type Libc string

// The C libraries kadiag ships a build for; Auto detects the host's.
const (
	Auto  Libc = "auto"
	Glibc Libc = "glibc"
	Musl  Libc = "musl"
)

// ErrNoTarget is returned (wrapped) for a libc/architecture pair kadiag ships
// no library for.
var ErrNoTarget = errors.New("no preload library for this target")

// Target is one shipped build.
type Target struct {
	Libc Libc   `json:"libc"`
	Arch string `json:"arch"` // GOARCH spelling: amd64, arm64
}

// String names the target as its directory under lib/: amd64-glibc, amd64-musl, arm64-glibc.
func (t Target) String() string { return t.Arch + "-" + string(t.Libc) }

func (t Target) path() string { return "lib/" + t.String() + "/" + LibraryName }

// Targets lists the shipped builds.
var Targets = []Target{{Glibc, "amd64"}, {Musl, "amd64"}, {Glibc, "arm64"}}

// Resolve turns the user's choice (libc may be Auto, arch may be "" for the
// running architecture) into a shipped target.
func Resolve(libc Libc, arch string) (Target, error) {
	if arch == "" || arch == "auto" {
		arch = runtime.GOARCH
	}
	if libc == "" || libc == Auto {
		libc = HostLibc()
	}
	switch libc {
	case Glibc, Musl:
	default:
		return Target{}, fmt.Errorf("%w: unknown libc %q (use auto, glibc or musl)", ErrNoTarget, libc)
	}
	t := Target{libc, arch}
	for _, s := range Targets {
		if s == t {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("%w: %s (shipped: amd64-glibc, amd64-musl, arm64-glibc)", ErrNoTarget, t)
}

// HostLibc guesses the C library of this machine's (or container's) programs
// from the dynamic loaders present: musl only when no glibc loader exists,
// since Debian's musl-tools installs the musl loader next to glibc's.
func HostLibc() Libc {
	glibc, _ := filepath.Glob("/lib*/ld-linux*.so.*")
	musl, _ := filepath.Glob("/lib/ld-musl-*.so.1")
	if len(glibc) == 0 && len(musl) > 0 {
		return Musl
	}
	return Glibc
}

// Library returns the bytes of the library for t.
func Library(t Target) ([]byte, error) {
	b, err := libs.ReadFile(t.path())
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoTarget, t)
	}
	return b, nil
}

// Extract writes the library for t into dir as libkadiag_keepalive.so and
// returns its absolute path. A missing dir is created, parents too, with
// mode 0755 as `install -d` makes it, so the library is readable by the
// application's user whatever the umask; an existing one is left as it is.
// The write is atomic (a temporary file in dir, fsync, rename over the final
// name), the file is mode 0755, and a symlink at the final name is replaced,
// never followed.
func Extract(dir string, t Target) (string, error) {
	data, err := Library(t)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	if err := mkdirAll(abs); err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	final := filepath.Join(abs, LibraryName)
	// ld.so needs the library readable by the application's user, and
	// executable is the convention for .so files. The rename replaces a
	// symlink at final itself, it never writes through it.
	err = atomicfile.WriteFile(final, 0o755, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	return final, nil
}

// mkdirAll creates dir and its missing parents with mode 0755, not narrowed
// by the umask: ld.so opens the library as the application's user.
func mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // made meanwhile by someone else: theirs to set
		}
		return err
	}
	return os.Chmod(dir, 0o755)
}
