package reports

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress is a live status line for long runs (a real-time simulate takes
// minutes, a live capture runs until stopped): elapsed / expected time, a
// bar, and the next thing to happen, redrawn in place. On anything but a
// terminal it writes nothing, so logs and pipes stay clean. Safe for
// concurrent use; the zero value and a nil *Progress do nothing.
type Progress struct {
	mu     sync.Mutex
	w      io.Writer
	on     bool
	drawn  bool
	last   time.Time
	minGap time.Duration
}

// NewProgress returns a progress line on w (usually stderr, so the report on
// stdout stays clean); it is active only when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	return &Progress{w: w, on: IsTerminal(w), minGap: 100 * time.Millisecond}
}

// Active reports whether the line is drawn at all.
func (p *Progress) Active() bool { return p != nil && p.on }

// Update redraws the line: "elapsed / expected [bar] next". expected may be
// zero for runs of unknown length (a live capture until Ctrl-C); next may be
// empty. Redraws closer than 100 ms apart are skipped.
func (p *Progress) Update(elapsed, expected time.Duration, next string) {
	if !p.Active() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.drawn && now.Sub(p.last) < p.minGap {
		return
	}
	p.last = now
	p.drawn = true
	fmt.Fprint(p.w, "\r\x1b[K"+ProgressLine(elapsed, expected, next))
}

// Done clears the line so the report that follows starts on a clean row.
func (p *Progress) Done() {
	if !p.Active() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// ProgressLine is the text of one progress line, without terminal control.
func ProgressLine(elapsed, expected time.Duration, next string) string {
	var b strings.Builder
	b.WriteString(clock(elapsed))
	if expected > 0 {
		const width = 24
		frac := min(float64(elapsed)/float64(expected), 1)
		n := int(frac * width)
		fmt.Fprintf(&b, " / %s [%s%s] %3.0f%%", clock(expected), strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100)
	}
	if next != "" {
		b.WriteString("  next: " + next)
	}
	return b.String()
}

// clock prints elapsed time as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	d = d.Truncate(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
