package proc

import (
	"errors"
	"fmt"
	"testing"
)

func TestPIDError(t *testing.T) {
	err := fmt.Errorf("scan: %w", Errorf(42, "read comm: %w", ErrNoProcess))
	if !errors.Is(err, ErrNoProcess) {
		t.Errorf("errors.Is(%v, ErrNoProcess) = false", err)
	}
	if pid, ok := FailedPID(err); !ok || pid != 42 {
		t.Errorf("FailedPID = %d, %v; want 42", pid, ok)
	}
	if got, want := err.Error(), "scan: pid 42: read comm: no such process"; got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if _, ok := FailedPID(errors.New("pid 7: looks like one")); ok {
		t.Error("FailedPID read a pid out of an error's text")
	}
}
