package simulate

import "context"

// Phase is a moment of a lab's life at which Config.Hook is called.
type Phase string

const (
	// PhaseSetup: the lab, its server and its evidence collectors are up;
	// the client has not started.
	PhaseSetup Phase = "setup"
	// PhaseTeardown: the client is done and the evidence collected; the lab
	// is not yet released.
	PhaseTeardown Phase = "teardown"
)

// at calls the configured hook, if any, and returns once it has.
func (c *Config) at(ctx context.Context, lab string, p Phase) {
	if c.Hook != nil {
		c.Hook(ctx, lab, p)
	}
}
