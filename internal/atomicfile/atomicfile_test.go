package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "out")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, 0o644, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("out: %v %v, want a regular 0644 file in place of the symlink", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("symlink target written through: %q", b)
	}
	if b, _ := os.ReadFile(link); string(b) != "new" {
		t.Errorf("out = %q", b)
	}

	// A failing writer leaves the old file and no temporary file.
	boom := errors.New("boom")
	if err := WriteFile(link, 0o644, func(w io.Writer) error { io.WriteString(w, "half"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(link); string(b) != "new" {
		t.Errorf("after a failed write out = %q, want the old content", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files left: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir"), 0o644, func(io.Writer) error { return nil }); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestCommitAbort: nothing under the final name before Commit, nothing left
// after Abort, and Abort after Commit does no harm.
func TestCommitAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.pcapng")
	a, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("partial"))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("final name exists before commit: %v", err)
	}
	a.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("abort left %v", ents)
	}
	a, _ = Create(path, 0o644)
	a.Write([]byte("whole"))
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	a.Abort() // after commit: nothing to do
	if b, _ := os.ReadFile(path); string(b) != "whole" {
		t.Errorf("content %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files %v", ents)
	}
	if _, err := Create(filepath.Join(dir, "no/such/dir/x.pcapng"), 0o644); err == nil {
		t.Errorf("create in a missing directory succeeded")
	}
}

// Cause strips the path error naming the file, and only that one.
func TestCause(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "r.html")
	_, openErr := os.Open(missing)
	plain := errors.New("render: bad template")
	tests := []struct {
		name string
		err  error
		path string
		want error
	}{
		{"names the file", openErr, missing, syscall.ENOENT},
		{"names another file", openErr, filepath.Join(dir, "other"), openErr},
		{"no path error", plain, missing, plain},
	}
	for _, tt := range tests {
		if got := Cause(tt.err, tt.path); got != tt.want {
			t.Errorf("%s: Cause = %v, want %v", tt.name, got, tt.want)
		}
	}
}
