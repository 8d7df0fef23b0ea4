package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kadiag/kadiag/simulate"
)

// holdEnv, set to a simulate.Phase, makes this test binary run as kadiag
// with a Config.Hook that holds every lab at that phase: it says so on
// stderr and waits there until interrupted (or a minute). Only the tests
// read it: the product has no such switch.
const holdEnv = "KADIAG_TEST_HOLD"

func TestMain(m *testing.M) {
	if phase := os.Getenv(holdEnv); phase != "" {
		simulateHook = func(ctx context.Context, p simulate.Phase, s *simulate.Stage) {
			if string(p) != phase {
				return
			}
			fmt.Fprintf(os.Stderr, "kadiag: test pause %s\n", p)
			// Ctrl-C ends the pause like any other wait, so signal tests see
			// the real shutdown path from this phase.
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
		}
		os.Exit(run(os.Args[1:]))
	}
	code := m.Run()
	// The binary built once for every test (buildKadiag) goes with them.
	if kadiagErr == nil && kadiagBin != "" {
		os.RemoveAll(filepath.Dir(kadiagBin))
	}
	os.Exit(code)
}
