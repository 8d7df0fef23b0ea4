package main

import (
	"time"

	"github.com/kadiag/kadiag/reports"
	"github.com/kadiag/kadiag/simulate"
	"github.com/spf13/cobra"
)

// simulateProgress shows, on a terminal, how far a lab run is: the labs run
// side by side, so the run ends when the last client gives up at the
// timeout; next is the lab's next milestone.
func simulateProgress(cmd *cobra.Command, cfg *simulate.Config) (stop func()) {
	t, _ := cfg.Timings()
	return startProgress(cmd, t.Timeout, func(el time.Duration) string {
		switch {
		case el < t.Idle:
			return "the middlebox forgets idle flows at " + reports.HumanDuration(t.Idle)
		case el < t.ResponseDelay:
			return "the server answers at " + reports.HumanDuration(t.ResponseDelay)
		}
		return "clients that got no answer give up at " + reports.HumanDuration(t.Timeout)
	})
}
