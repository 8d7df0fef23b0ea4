package capture

import (
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

func TestLabOracle(t *testing.T) {
	testenv.Need(t, "tshark")
	lc := runLab(t)
	for _, file := range []string{lc.eth, lc.nano, lc.any, lc.live} {
		res, err := ReadFile(file, Options{})
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		checkOracle(t, file, res)
	}
}
