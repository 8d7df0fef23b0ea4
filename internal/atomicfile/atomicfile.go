// Package atomicfile writes files the way every kadiag output file must be
// written: under a temporary name in the target's directory, fsynced, then
// renamed over the final name. A reader sees the old file or the whole new
// one, never half of one; a symlink at the final name is replaced, never
// followed; on any error nothing is left behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is a file being written under a temporary name beside its final path.
type File struct {
	f    *os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts a file that Commit puts at path with permissions perm.
// The temporary file is created exclusively, so nothing is followed.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, pathErr("create", path, err)
	}
	return &File{f: f, path: path, perm: perm}, nil
}

// Write writes to the temporary file. Its errors name the final path: the
// temporary name means nothing to whoever reads the message.
func (a *File) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	return n, pathErr("write", a.path, err)
}

// Cause returns err without the *os.PathError naming path that File's
// errors carry, for callers whose own message names the file already:
// "cannot write report file r.html: no space left on device".
func Cause(err error, path string) error {
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Path == path {
		return pe.Err
	}
	return err
}

// pathErr names the final path in err, in place of the temporary file's
// (nil stays nil).
func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

// Commit sets the permissions, syncs, closes and renames the file into
// place, then syncs the directory so the rename survives a crash too. On
// error the temporary file is removed.
func (a *File) Commit() error {
	if a.done {
		return fmt.Errorf("%s: already committed or aborted", a.path)
	}
	err := pathErr("chmod", a.path, a.f.Chmod(a.perm))
	if err == nil {
		err = pathErr("fsync", a.path, a.f.Sync())
	}
	if cerr := a.f.Close(); err == nil {
		err = pathErr("close", a.path, cerr)
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.path)
	}
	a.done = true
	if err != nil {
		os.Remove(a.f.Name())
		return err
	}
	if d, err := os.Open(filepath.Dir(a.path)); err == nil {
		// A failure here loses nothing already written.
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the temporary file unless Commit already ran.
func (a *File) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}

// WriteFile writes path atomically with the content write produces.
func WriteFile(path string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
