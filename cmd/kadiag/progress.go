package main

import (
	"time"

	"github.com/kadiag/kadiag/reports"
	"github.com/spf13/cobra"
)

// startProgress draws a live progress line on the command's stderr while a
// long run (live capture, real-time simulate) goes on, when stderr is a
// terminal; next says what comes next at a given elapsed time. Call the
// returned function when the run ends: it stops and clears the line.
func startProgress(cmd *cobra.Command, expected time.Duration, next func(elapsed time.Duration) string) (stop func()) {
	p := reports.NewProgress(cmd.ErrOrStderr())
	if !p.Active() {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			el := time.Since(start)
			p.Update(el, expected, next(el))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.Done()
	}
}

// wantsTimeline reports whether the chosen format draws timelines, so
// commands record per-packet events only when they are shown.
func wantsTimeline() bool {
	f, _ := reports.ParseFormat(global.output)
	return f == reports.HTML || f == reports.Markdown
}
