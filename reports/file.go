package reports

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrReportPath is returned (wrapped) when a report file cannot be written
// where asked.
var ErrReportPath = errors.New("cannot write report file")

// WriteFile writes a report to path atomically: into a new temporary file in
// the same directory (created exclusively, so nothing is followed), fsync,
// rename over path, fsync the directory. A reader sees the old file or the
// whole new one, never half a report; a symlink at path is replaced, never
// followed; on error nothing is left behind.
func WriteFile(path string, write func(io.Writer) error) (err error) {
	if path == "" {
		return fmt.Errorf("%w: empty path", ErrReportPath)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory (give a file name, e.g. %s)", ErrReportPath, path, filepath.Join(path, "kadiag-report.html"))
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %v (does the directory %s exist and is it writable?)", ErrReportPath, err, dir)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrReportPath, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("%w: fsync %s: %v", ErrReportPath, tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrReportPath, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%w: %v", ErrReportPath, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
