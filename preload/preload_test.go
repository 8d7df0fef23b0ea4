package preload

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		libc Libc
		arch string
		want Target
		err  bool
	}{
		{Glibc, "amd64", Target{Glibc, "amd64"}, false},
		{Musl, "amd64", Target{Musl, "amd64"}, false},
		{Glibc, "arm64", Target{Glibc, "arm64"}, false},
		{Auto, "", Target{HostLibc(), runtime.GOARCH}, false},
		{Glibc, "auto", Target{Glibc, runtime.GOARCH}, false},
		{Musl, "arm64", Target{}, true},
		{"bionic", "amd64", Target{}, true},
		{Glibc, "riscv64", Target{}, true},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.libc, tt.arch)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("Resolve(%q, %q) = %v, %v", tt.libc, tt.arch, got, err)
		}
		if tt.err && !errors.Is(err, ErrNoTarget) {
			t.Errorf("Resolve(%q, %q) error %v is not ErrNoTarget", tt.libc, tt.arch, err)
		}
	}
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	for _, target := range Targets {
		p, err := Extract(dir, target)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		want, _ := Library(target)
		fi, _ := os.Stat(p)
		if !bytes.Equal(got, want) || fi.Mode().Perm() != 0o755 || !filepath.IsAbs(p) {
			t.Errorf("%s: %s mode %v, %d bytes", target, p, fi.Mode(), len(got))
		}
	}
	file := filepath.Join(dir, LibraryName)
	if _, err := Extract(file, Targets[0]); err == nil {
		t.Error("Extract into a file succeeded")
	}
	// A read-only directory: the error comes before anything is written.
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)
	if os.Geteuid() != 0 {
		if _, err := Extract(ro, Targets[0]); err == nil {
			t.Error("Extract into a read-only directory succeeded")
		}
		if _, err := Extract(filepath.Join(ro, "sub"), Targets[0]); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Extract into a new directory below a read-only one: %v, want permission denied", err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("leftovers in %s: %v", dir, ents)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		allowMS bool
		want    time.Duration
		err     bool
	}{
		{"90", false, 90 * time.Second, false},
		{"90s", false, 90 * time.Second, false},
		{"5m", false, 5 * time.Minute, false},
		{"1h", false, time.Hour, false},
		{"250ms", true, 250 * time.Millisecond, false},
		{"250ms", false, 0, true},
		{"", false, 0, true},
		{"-1", false, 0, true},
		{"1.5s", false, 0, true},
		{"1m30s", false, 0, true},
		{" 5", false, 0, true},
		{"5 ", false, 0, true},
		{"9999999999", false, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in, tt.allowMS)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q, %v) = %v, %v", tt.in, tt.allowMS, got, err)
		}
	}
}

// TestExtractMakesDir: a missing directory is made with its parents, mode
// 0755 even under a umask of 077 (as install -d does); an existing one
// keeps its mode; a file in the way is refused.
func TestExtractMakesDir(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tgt, err := Resolve(Glibc, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.Chmod(root, 0o700)
	path, err := Extract(filepath.Join(root, "usr/local/lib/kadiag"), tgt)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(root, "usr/local/lib/kadiag", LibraryName) {
		t.Errorf("path %s", path)
	}
	for _, d := range []string{"usr", "usr/local", "usr/local/lib", "usr/local/lib/kadiag", "usr/local/lib/kadiag/" + LibraryName} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v; want 0755", d, err, fi.Mode())
		}
	}
	if fi, _ := os.Stat(root); fi.Mode().Perm() != 0o700 {
		t.Errorf("the existing directory's mode changed to %v", fi.Mode())
	}
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Extract(file, tgt); err == nil || !strings.Contains(err.Error(), file+" is not a directory") {
		t.Errorf("extract into a file: %v", err)
	}
	if _, err := Extract(filepath.Join(file, "sub"), tgt); err == nil {
		t.Error("extract below a file succeeded")
	}
}
