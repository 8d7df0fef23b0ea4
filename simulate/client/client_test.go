package client

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

// TestClientFresh fails when c/client.c changed but the committed binary was
// not rebuilt with build.sh. With the recorded compiler the rebuilt binary
// must be byte-identical; with another compiler only the source hash is
// comparable.
func TestClientFresh(t *testing.T) {
	testenv.Need(t, "gcc")
	info, err := os.ReadFile("BUILDINFO")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("c/client.c")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(info)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		fields[k] = v
	}
	if got := hex.EncodeToString(sum[:]); fields["source-sha256"] != got {
		t.Fatalf("c/client.c changed (sha256 %s, BUILDINFO says %s): run simulate/client/build.sh and commit", got, fields["source-sha256"])
	}
	out := filepath.Join(t.TempDir(), "kadiag-client")
	build := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none", "-s", "-o", out, "c/client.c")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, b)
	}
	ver, err := exec.Command("gcc", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	compiler := strings.SplitN(string(ver), "\n", 2)[0]
	if compiler != fields["compiler"] {
		t.Logf("compiler %q differs from the recorded %q: compared the source hash only", compiler, fields["compiler"])
		return
	}
	rebuilt, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt, Binary) {
		t.Fatalf("embedded kadiag-client is stale: run simulate/client/build.sh and commit")
	}
}
