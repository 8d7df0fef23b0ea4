package capture

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
)

// atomicFile is written under a temporary name in the target's directory
// and renamed into place only when complete and synced: a reader never
// sees a half-written capture under the final name.
type atomicFile struct {
	f    *os.File
	w    *bufio.Writer
	path string
	done bool
}

func createAtomic(path string) (*atomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &atomicFile{f: f, w: bufio.NewWriterSize(f, 1<<16), path: path}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) { return a.w.Write(p) }

// Commit flushes, syncs, and renames the file into place.
func (a *atomicFile) Commit() error {
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.f.Name())
		return err
	}
	a.done = true
	// Sync the directory so the rename itself survives a crash.
	if d, err := os.Open(filepath.Dir(a.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the temporary file unless Commit succeeded.
func (a *atomicFile) Abort() {
	if a.done {
		return
	}
	a.f.Close()
	os.Remove(a.f.Name())
	a.done = true
}
