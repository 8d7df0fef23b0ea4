package reports

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// openPty opens a real pseudo-terminal pair: what a user's shell gives
// kadiag as stdout.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

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
