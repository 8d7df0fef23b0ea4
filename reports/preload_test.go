package reports

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// TestPreloadEnvShellQuoting: values with spaces and quotes survive a real
// shell's eval of the export lines.
func TestPreloadEnvShellQuoting(t *testing.T) {
	testenv.Need(t, "sh")
	weird := "/opt/my libs/it's/libkadiag_keepalive.so"
	r := PreloadEnv{Format: EnvShell, Env: []preload.EnvVar{{Name: "LD_PRELOAD", Value: weird}, {Name: "KADIAG_KEEPIDLE", Value: "60"}}}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", b.String()+"\nprintf '%s|%s' \"$LD_PRELOAD\" \"$KADIAG_KEEPIDLE\"").Output()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, b.String())
	}
	if string(out) != weird+"|60" {
		t.Errorf("shell read %q from\n%s", out, b.String())
	}
}

func TestYAMLQuote(t *testing.T) {
	for in, want := range map[string]string{`a"b`: `"a\"b"`, `c:\x`: `"c:\\x"`, "plain": `"plain"`} {
		if got := yamlQuote(in); got != want {
			t.Errorf("yamlQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
