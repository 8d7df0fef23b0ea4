package simulate

import (
	"fmt"
	"time"

	"github.com/kadiag/kadiag/simulate/client"
)

// observation is what one lab run saw of its client, before it is judged.
type observation struct {
	bundled  bool // the bundled client: its exit status says what happened
	killed   bool // the backstop killed it
	exitCode int
	resets   int // RSTs it received (a user command's only evidence of one)
	timeout  time.Duration
}

// classify turns an observation into an outcome and, for a user command,
// the line that says what it did.
func classify(o observation) (outcome, said string) {
	if o.bundled {
		switch {
		case o.killed:
			return OutcomeTimeout, ""
		case o.exitCode == client.ExitOK:
			return OutcomeOK, ""
		case o.exitCode == client.ExitTimeout || o.exitCode == client.ExitDead:
			return OutcomeTimeout, ""
		case o.exitCode == client.ExitReset:
			return OutcomeReset, ""
		}
		return OutcomeError, ""
	}
	switch {
	case o.killed:
		return OutcomeTimeout, fmt.Sprintf("killed at --timeout %s", o.timeout)
	case o.exitCode == 0:
		return OutcomeOK, "exit status 0"
	case o.resets > 0:
		return OutcomeReset, fmt.Sprintf("exit status %d", o.exitCode)
	}
	return OutcomeFailed, fmt.Sprintf("exit status %d", o.exitCode)
}

// meets reports whether an outcome is what the expectation asks for.
func meets(expect, outcome string) bool {
	switch expect {
	case ExpectOK:
		return outcome == OutcomeOK
	case ExpectFail:
		return outcome == OutcomeTimeout || outcome == OutcomeReset || outcome == OutcomeFailed
	}
	return false
}
