package testenv

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// TestCheckSHA256Sums: one flipped byte, a file missing from the record and
// a recorded file no longer shipped are each caught.
func TestCheckSHA256Sums(t *testing.T) {
	files := map[string][]byte{"a/lib.so": []byte("\x7fELF one"), "b/lib.so": []byte("\x7fELF two")}
	var record []byte
	for _, name := range []string{"a/lib.so", "b/lib.so"} {
		record = append(record, fmt.Sprintf("%x  %s\n", sha256.Sum256(files[name]), name)...)
	}
	if err := CheckSHA256Sums(record, files); err != nil {
		t.Fatalf("intact files: %v", err)
	}
	edited := map[string][]byte{"a/lib.so": []byte("\x7fELF onE"), "b/lib.so": files["b/lib.so"]}
	if err := CheckSHA256Sums(record, edited); err == nil || !strings.Contains(err.Error(), "a/lib.so has sha256") {
		t.Errorf("edited byte: %v", err)
	}
	extra := map[string][]byte{"a/lib.so": files["a/lib.so"], "b/lib.so": files["b/lib.so"], "c/lib.so": nil}
	if err := CheckSHA256Sums(record, extra); err == nil || !strings.Contains(err.Error(), "c/lib.so is not recorded") {
		t.Errorf("unrecorded file: %v", err)
	}
	if err := CheckSHA256Sums(record, map[string][]byte{"a/lib.so": files["a/lib.so"]}); err == nil || !strings.Contains(err.Error(), "b/lib.so is recorded but not shipped") {
		t.Errorf("dropped file: %v", err)
	}
	if err := CheckSHA256Sums([]byte("nonsense\n"), files); err == nil {
		t.Error("a record not in sha256sum format was accepted")
	}
}
