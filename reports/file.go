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
	if path == "" {
		return fmt.Errorf("%w: empty path", ErrReportPath)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory (give a file name, e.g. %s)", ErrReportPath, path, filepath.Join(path, "kadiag-report.html"))
	}
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %v (does the directory %s exist and is it writable?)", ErrReportPath, err, filepath.Dir(path))
	}
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("%w: %v", ErrReportPath, err)
	}
	return nil
}
