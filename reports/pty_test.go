package reports

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// readPty reads what is waiting on the master side.
func readPty(t *testing.T, m *os.File) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	if err := unix.SetNonblock(int(m.Fd()), true); err != nil {
		t.Fatal(err)
	}
	n, err := unix.Read(int(m.Fd()), buf)
	if err != nil && err != unix.EAGAIN {
		t.Fatal(err)
	}
	return string(buf[:max(n, 0)])
}
