package reports

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kadiag/kadiag/internal/atomicfile"
)

// ErrReportPath is returned (wrapped) when a report file cannot be written
// where asked.
var ErrReportPath = errors.New("cannot write report file")

// WriteFile writes a report to path atomically: into a new temporary file in
// the same directory (created exclusively, so nothing is followed), fsync,
// rename over path, fsync the directory. A reader sees the old file or the
// whole new one, never half a report; a symlink at path is replaced, never
// followed; on error nothing is left behind.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Abort()
		return reportErr(path, err)
	}
	if err := f.Commit(); err != nil {
		return reportErr(path, err)
	}
	return nil
}

// CheckPath finds out before a command runs, not after minutes of lab time
// or capture, that a report cannot be written at path: it creates and
// removes the temporary file WriteFile would write.
func CheckPath(path string) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	f.Abort()
	return nil
}

func create(path string) (*atomicfile.File, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrReportPath)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory (give a file name, e.g. %s)", ErrReportPath, path, filepath.Join(path, "kadiag-report.html"))
	}
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (does the directory %s exist and is it writable?)", ErrReportPath, err, filepath.Dir(path))
	}
	return f, nil
}

// reportErr names the report file and the cause once: "cannot write report
// file r.html: no space left on device".
func reportErr(path string, err error) error {
	return fmt.Errorf("%w %s: %w", ErrReportPath, path, atomicfile.Cause(err, path))
}
