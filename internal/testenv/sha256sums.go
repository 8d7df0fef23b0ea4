package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// CheckSHA256Sums compares files (name → bytes) with a record in sha256sum's
// format ("HASH  NAME" per line), as the builds of committed binaries write
// it next to them. Every file must be listed with its hash and every listed
// name must be among files: a binary edited, added or dropped without its
// build is caught whatever compiler this machine has.
func CheckSHA256Sums(record []byte, files map[string][]byte) error {
	listed := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(record)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 2*sha256.Size {
			return fmt.Errorf("line %d %q is not in sha256sum format", i+1, line)
		}
		listed[name] = sum
	}
	var bad []string
	for name, b := range files {
		h := sha256.Sum256(b)
		switch want, ok := listed[name]; {
		case !ok:
			bad = append(bad, name+" is not recorded")
		case want != hex.EncodeToString(h[:]):
			bad = append(bad, fmt.Sprintf("%s has sha256 %x, recorded %s", name, h, want))
		}
		delete(listed, name)
	}
	for name := range listed {
		bad = append(bad, name+" is recorded but not shipped")
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}
