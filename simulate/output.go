package simulate

import (
	"io"
	"os"
	"sync"
)

// lockedWriter serialises writes: exec copies a writer that is not a file
// from a goroutine per process, and the user's command and every lab's
// --server may share one.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lockWriters wraps the command's and servers' output writers (the same
// wrapper where they are the same writer); files pass through, as exec hands
// their descriptors to the processes.
func lockWriters(stdout, stderr io.Writer) (io.Writer, io.Writer) {
	wrap := func(w io.Writer) io.Writer {
		if _, ok := w.(*os.File); ok || w == nil {
			return w
		}
		return &lockedWriter{w: w}
	}
	out := wrap(stdout)
	if stderr == stdout {
		return out, out
	}
	return out, wrap(stderr)
}
