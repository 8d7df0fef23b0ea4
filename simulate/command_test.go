package simulate

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/middlebox"
)

// commandCase runs a real client as the user command, with and without the
// library, and checks the outcome and what the client itself printed.
type commandCase struct {
	name    string
	cmd     []string
	preload bool
	want    string // ExpectOK or ExpectFail (timeout, failed or reset)
	stdout  string // what the client prints on success
}

func runCommand(t *testing.T, c commandCase, after middlebox.AfterExpiry, timeout time.Duration) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	res := run(t, fast(Config{After: after, Command: c.cmd, WithPreload: c.preload, Library: testLibrary(t),
		Expect: c.want, Timeout: timeout, Stdout: &stdout, Stderr: &stderr}))
	s := scenario(t, res, "command")
	t.Logf("%s: %s\nstdout: %s\nstderr: %s", c.name, s.Evidence, stdout.String(), stderr.String())
	ok := s.Outcome == OutcomeOK
	if ok != (c.want == ExpectOK) || !s.Passed || !res.Passed() {
		t.Errorf("%s: outcome %s passed %v, want %s", c.name, s.Outcome, s.Passed, c.want)
	}
	if c.preload && s.Probes == 0 {
		t.Errorf("%s: no keepalive probes on the wire with the library", c.name)
	}
	if !c.preload && s.Probes != 0 {
		t.Errorf("%s: %d probes without the library", c.name, s.Probes)
	}
	if c.stdout != "" && !strings.Contains(stdout.String(), c.stdout) {
		t.Errorf("%s: stdout %q lacks %q", c.name, stdout.String(), c.stdout)
	}
}

// TestCurl: curl --no-keepalive hangs behind the forgetting middlebox and
// gets its 200 with the library.
func TestCurl(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "curl")
	for _, c := range []commandCase{
		{name: "curl", cmd: []string{"curl", "-sS", "--no-keepalive", "-w", "code=%{http_code}\n", "{url}"}, want: ExpectFail},
		{name: "curl+preload", cmd: []string{"sh", "-c", `exec curl -sS --no-keepalive -w 'code=%{http_code}\n' "$KADIAG_URL"`}, preload: true, want: ExpectOK, stdout: "code=200"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runCommand(t, c, middlebox.Reset, 8*time.Second)
		})
	}
}

// TestJDKHttpClient: the JDK 17 HttpClient (no keepalive by default, IPv6
// sockets) times out behind the middlebox and gets its 200 with the library.
func TestJDKHttpClient(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "java")
	src, err := filepath.Abs("testdata/Fetch.java")
	if err != nil {
		t.Fatal(err)
	}
	// Compile once outside the lab so the JVM's start is not part of the idle
	// period: the class runs from a directory.
	dir := t.TempDir()
	if out, err := exec.Command("javac", "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	for _, c := range []commandCase{
		{name: "jdk", cmd: []string{"java", "-XX:-UsePerfData", "-cp", dir, "Fetch", "{url}", "10"}, want: ExpectFail},
		{name: "jdk+preload", cmd: []string{"java", "-XX:-UsePerfData", "-cp", dir, "Fetch", "{url}", "10"}, preload: true, want: ExpectOK, stdout: "status 200"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runCommand(t, c, middlebox.Drop, 40*time.Second)
		})
	}
}
