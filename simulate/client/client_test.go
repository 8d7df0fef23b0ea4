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

// TestClientFresh fails when c/client.c changed but the committed binaries
// were not rebuilt with build.sh. With the recorded compiler a rebuilt
// binary must be byte-identical; with another compiler only the source hash
// is comparable.
func TestClientFresh(t *testing.T) {
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
	for arch, cc := range map[string]string{"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"} {
		t.Run(arch, func(t *testing.T) {
			testenv.Need(t, cc)
			out := filepath.Join(t.TempDir(), "kadiag-client")
			build := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none", "-s", "-o", out, "c/client.c")
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("rebuild: %v\n%s", err, b)
			}
			ver, err := exec.Command(cc, "--version").Output()
			if err != nil {
				t.Fatal(err)
			}
			compiler := strings.SplitN(string(ver), "\n", 2)[0]
			if compiler != fields["compiler-"+arch] {
				t.Logf("compiler %q differs from the recorded %q: compared the source hash only", compiler, fields["compiler-"+arch])
				return
			}
			rebuilt, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			embedded, err := Binary(arch)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rebuilt, embedded) {
				t.Fatalf("embedded kadiag-client-%s is stale: run simulate/client/build.sh and commit", arch)
			}
		})
	}
}

// TestClientBinariesRecorded: the embedded clients are, byte for byte, the
// ones build.sh built (BINARIES.sha256), whatever compiler this machine has.
func TestClientBinariesRecorded(t *testing.T) {
	record, err := os.ReadFile("BINARIES.sha256")
	if err != nil {
		t.Fatalf("%v: run simulate/client/build.sh and commit", err)
	}
	files := map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		if files["kadiag-client-"+arch], err = Binary(arch); err != nil {
			t.Fatal(err)
		}
	}
	if err := testenv.CheckSHA256Sums(record, files); err != nil {
		t.Errorf("the embedded clients differ from what build.sh recorded: %v; run simulate/client/build.sh and commit", err)
	}
}

// TestClientArm64 runs the arm64 build under qemu against a local server:
// the shipped binary works, not just links.
func TestClientArm64(t *testing.T) {
	testenv.Need(t, "qemu-aarch64", "python3")
	if _, err := os.Stat("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"); err != nil {
		testenv.SkipOrFail(t, "no aarch64 glibc for qemu (libc6-dev-arm64-cross): %v", err)
	}
	b, err := Binary("arm64")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "kadiag-client")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// A bad URL is answered by the client itself: enough to prove it runs.
	cmd := exec.Command("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", bin, "ftp://nowhere")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 64 || !strings.Contains(string(out), "need one http:// URL") {
		t.Fatalf("arm64 client under qemu: %v, output %q; want its usage error (exit 64)", err, out)
	}
}
