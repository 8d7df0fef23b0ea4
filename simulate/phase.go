package simulate

import "context"

// Phase is a moment of a lab's life at which Config.Hook is called.
type Phase string

const (
	// PhaseSetup: the lab, its server and its evidence collectors are up;
	// the client has not started.
	PhaseSetup Phase = "setup"
	// PhaseRunning: the client has just started (Stage.Pid is set); the lab
	// goes on once the hook returns, so a hook that watches the run starts
	// its own goroutine.
	PhaseRunning Phase = "running"
	// PhaseTeardown: the client is done and the evidence collected; the lab
	// is not yet released.
	PhaseTeardown Phase = "teardown"
)

// at calls the configured hook, if any, and returns once it has.
func (c *Config) at(ctx context.Context, p Phase, s *Stage) {
	if c.Hook != nil {
		c.Hook(ctx, p, s)
	}
}
