package preload

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// TestCommittedBinariesRecorded: the embedded libraries are, byte for byte,
// the ones 'make preload' built (lib/BINARIES.sha256). A rebuild can only be
// compared on the recorded compilers; this check holds on any machine.
func TestCommittedBinariesRecorded(t *testing.T) {
	record, err := os.ReadFile("lib/BINARIES.sha256")
	if err != nil {
		t.Fatalf("%v: run 'make preload' and commit preload/lib", err)
	}
	files := map[string][]byte{}
	for _, target := range Targets {
		if files[target.String()+"/"+LibraryName], err = Library(target); err != nil {
			t.Fatal(err)
		}
	}
	if err := testenv.CheckSHA256Sums(record, files); err != nil {
		t.Errorf("preload/lib differs from what 'make preload' recorded: %v; run 'make preload' and commit preload/lib", err)
	}
}

// TestCommittedLibrariesFresh rebuilds the libraries from source with the
// same recipe (make preload into a temporary directory) and compares bytes
// with the committed, embedded ones.
func TestCommittedLibrariesFresh(t *testing.T) {
	src, err := os.ReadFile("src/keepalive.c")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	recorded, err := os.ReadFile("lib/SOURCES.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(recorded)); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("preload/lib was built from another keepalive.c: run 'make preload' and commit preload/lib")
	}

	testenv.Need(t, "make", "gcc", "musl-gcc", "aarch64-linux-gnu-gcc")
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", "..", "preload", "PRELOAD_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make preload: %v\n%s", err, b)
	}
	toolchain, _ := os.ReadFile("lib/TOOLCHAIN")
	ours, _ := os.ReadFile(filepath.Join(out, "TOOLCHAIN"))
	sameTools := bytes.Equal(toolchain, ours)
	for _, target := range Targets {
		committed, err := Library(target)
		if err != nil {
			t.Fatal(err)
		}
		built, err := os.ReadFile(filepath.Join(out, target.String(), LibraryName))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, built) {
			if !sameTools {
				// Another compiler makes other bytes from the same source;
				// the source hash above still guards against staleness.
				t.Logf("%s differs, but the committed build used\n%s\nand this machine has\n%s", target, toolchain, ours)
				continue
			}
			t.Errorf("%s: committed library differs from a rebuild of src/keepalive.c: run 'make preload' and commit preload/lib", target)
		}
	}
}
