package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// TestManPages generates the man pages as `make man` does and renders each
// with groff's man macros, warnings on: every command has a page, and the
// pages carry the commands' flags.
func TestManPages(t *testing.T) {
	testenv.Need(t, "groff")
	dir := t.TempDir()
	if _, stderr, code := runKadiag(t, "man", "--dir", dir); code != 0 {
		t.Fatalf("kadiag man: exit %d: %s", code, stderr)
	}
	for _, page := range []string{"kadiag.1", "kadiag-sockets.1", "kadiag-doctor.1", "kadiag-capture.1", "kadiag-preload-check.1", "kadiag-completion-bash.1"} {
		path := filepath.Join(dir, page)
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("groff %s: %v %s", page, err, stderr.String())
		}
		if len(out) < 200 {
			t.Errorf("%s renders to %d bytes", page, len(out))
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "kadiag-doctor.1"))
	for _, want := range []string{"--pid", "--max-idle", "CAP_SYS_PTRACE"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kadiag-doctor.1 lacks %q", want)
		}
	}
	if _, _, code := runKadiag(t, "man"); code != 2 {
		t.Errorf("kadiag man without --dir: exit %d", code)
	}
}

// TestBashCompletion loads the generated completion into a real bash (with
// the bash-completion package, as a user's shell has it) and asks it for
// the commands and a flag's values.
func TestBashCompletion(t *testing.T) {
	testenv.Need(t, "bash")
	if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
		testenv.SkipOrFail(t, "bash-completion not installed (scripts/debian-packages.txt)")
	}
	bin := buildKadiag(t)
	script := `source /usr/share/bash-completion/bash_completion
source <("$KADIAG" completion bash)
compopt() { :; }   # only valid inside a completion bash itself started
complete -p kadiag >/dev/null || exit 3
COMP_WORDS=(kadiag do); COMP_CWORD=1; COMP_LINE="kadiag do"; COMP_POINT=${#COMP_LINE}
__start_kadiag kadiag do kadiag
echo "${COMPREPLY[@]}"
COMP_WORDS=(kadiag sockets --max-idle az); COMP_CWORD=3; COMP_LINE="kadiag sockets --max-idle az"; COMP_POINT=${#COMP_LINE}
__start_kadiag kadiag az --max-idle
echo "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "KADIAG="+bin, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "doctor") || !strings.Contains(lines[1], "azure-lb") {
		t.Errorf("completion offered %q", lines)
	}
}
