package capture

import (
	"os"
	"testing"
)

// TestMain removes what the lab, run once for every test, captured.
func TestMain(m *testing.M) {
	code := m.Run()
	if labCap != nil && labCap.dir != "" {
		os.RemoveAll(labCap.dir)
	}
	os.Exit(code)
}
