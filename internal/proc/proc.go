// Package proc holds the errors every kadiag package returns about a
// process, so that callers test them one way: errors.Is(err, ErrNoProcess)
// for a pid that does not exist, errors.As(err, &*PIDError) for the pid an
// error concerns.
package proc

import (
	"errors"
	"fmt"
	"os"
)

// ErrNoProcess means a pid does not exist (or exited while it was read).
// inspect.ErrNoProcess, preload.ErrNoProcess and doctor.ErrNoProcess are
// this same value.
var ErrNoProcess = errors.New("no such process")

// PIDError is an error about one process. Its text is "pid N: " and the
// wrapped error's text, so messages read as before.
type PIDError struct {
	PID int
	Err error
}

func (e *PIDError) Error() string { return fmt.Sprintf("pid %d: %v", e.PID, e.Err) }

// Unwrap returns the wrapped error, for errors.Is and errors.As.
func (e *PIDError) Unwrap() error { return e.Err }

// Errorf returns a *PIDError for pid whose Err is fmt.Errorf(format, args...).
func Errorf(pid int, format string, args ...any) error {
	return &PIDError{PID: pid, Err: fmt.Errorf(format, args...)}
}

// FailedPID returns the pid of the first *PIDError in err's chain, if any.
func FailedPID(err error) (int, bool) {
	var pe *PIDError
	if errors.As(err, &pe) {
		return pe.PID, true
	}
	return 0, false
}

// IsRoot reports whether the caller runs as root: messages about a missing
// privilege must not tell root to "run as root".
func IsRoot() bool { return os.Geteuid() == 0 }
