package preload

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

func checkProc(t *testing.T, p *proc) *CheckResult {
	t.Helper()
	p.line(t)
	r, err := Check(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func wantReason(t *testing.T, r *CheckResult, effective bool, reason string) {
	t.Helper()
	if r.Effective != effective {
		t.Errorf("effective = %v, want %v (reasons %q)", r.Effective, effective, r.Reasons)
	}
	if reason != "" && !strings.Contains(strings.Join(r.Reasons, "\n"), reason) {
		t.Errorf("reasons %q lack %q", r.Reasons, reason)
	}
	if !effective && len(r.Advice) == 0 {
		t.Errorf("not effective but no advice: %+v", r)
	}
}

func TestCheck(t *testing.T) {
	testenv.Privileged(t)
	glibcClient, muslClient := client(t, "gcc"), client(t, "musl-gcc")
	glibcLib, muslLib := lib(t, amd64Glibc), lib(t, amd64Musl)
	addr := listen(t, "tcp4", "127.0.0.1:0")
	host, port := hostPort(t, addr)
	args := []string{"tcp4", host, port, "_"}

	t.Run("effective", func(t *testing.T) {
		p := start(t, []string{"LD_PRELOAD=" + glibcLib, "KADIAG_KEEPIDLE=30"}, glibcClient, args...)
		r := checkProc(t, p)
		wantReason(t, r, true, "")
		if !r.Library.Mapped || r.Library.Libc != Glibc || r.Binary.Libc != Glibc || r.Config.Idle.Seconds() != 30 {
			t.Errorf("unexpected result %+v", r)
		}
		if len(r.Sockets) != 1 || !r.Sockets[0].OK || r.Sockets[0].Remote != addr {
			t.Errorf("sockets %+v", r.Sockets)
		}
	})
	t.Run("no-ld-preload", func(t *testing.T) {
		r := checkProc(t, start(t, nil, glibcClient, args...))
		wantReason(t, r, false, "LD_PRELOAD is not set")
	})
	t.Run("keepalive-off", func(t *testing.T) {
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + glibcLib, "KADIAG_KEEPALIVE=off"}, glibcClient, args...))
		wantReason(t, r, false, "inert")
	})
	t.Run("app-disables-without-enforce", func(t *testing.T) {
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + glibcLib, "KADIAG_ENFORCE=0"}, glibcClient, append(args, "weaken")...))
		wantReason(t, r, false, "do not carry")
		if len(r.Sockets) != 1 || r.Sockets[0].OK || !strings.Contains(r.Sockets[0].Problem, "keepalive off") {
			t.Errorf("sockets %+v", r.Sockets)
		}
	})
	t.Run("missing-file", func(t *testing.T) {
		r := checkProc(t, start(t, []string{"LD_PRELOAD=/nonexistent/libkadiag_keepalive.so"}, glibcClient, args...))
		wantReason(t, r, false, "not mapped")
		if !strings.Contains(strings.Join(r.Advice, " "), "does not exist") {
			t.Errorf("advice %q", r.Advice)
		}
	})
	t.Run("musl-process", func(t *testing.T) {
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + muslLib}, muslClient, args...))
		wantReason(t, r, true, "")
		if r.Binary.Libc != Musl || r.Library.Libc != Musl {
			t.Errorf("libc: process %q, library %q", r.Binary.Libc, r.Library.Libc)
		}
	})
	t.Run("musl-process-glibc-library", func(t *testing.T) {
		// musl's loader accepts the glibc build; check says to use the musl one.
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + glibcLib}, muslClient, args...))
		if r.Binary.Libc != Musl || r.Library.Libc != Glibc || !strings.Contains(strings.Join(r.Notes, " "), "--libc musl") {
			t.Errorf("mismatch not reported: %+v", r)
		}
	})
	t.Run("go-binary", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + glibcLib, "KADIAG_TEST_GO_HOLD=" + addr}, self))
		wantReason(t, r, false, "a Go program (go1.")
	})
	t.Run("static-binary", func(t *testing.T) {
		static := filepath.Join(t.TempDir(), "client-static")
		if out, err := exec.Command("musl-gcc", "-static", "-O1", "-pthread", "-o", static, "testdata/client.c").CombinedOutput(); err != nil {
			t.Fatalf("musl-gcc -static: %v\n%s", err, out)
		}
		r := checkProc(t, start(t, []string{"LD_PRELOAD=" + glibcLib}, static, args...))
		wantReason(t, r, false, "statically linked")
		if !r.Binary.Static || r.Library.Mapped {
			t.Errorf("binary %+v library %+v", r.Binary, r.Library)
		}
	})
	t.Run("setuid-binary", func(t *testing.T) {
		testenv.Need(t, "setpriv")
		dir := worldReadableDir(t)
		bin := copyClient(t, glibcClient, dir, "client-setuid")
		if err := os.Chmod(bin, os.ModeSetuid|0o755); err != nil {
			t.Fatal(err)
		}
		so, err := Extract(dir, amd64Glibc)
		if err != nil {
			t.Fatal(err)
		}
		p := start(t, []string{"LD_PRELOAD=" + so}, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		r := checkProc(t, p)
		wantReason(t, r, false, "secure-execution")
		if !r.Binary.Setuid || !r.Binary.SecureExec || r.Library.Mapped {
			t.Errorf("binary %+v library %+v", r.Binary, r.Library)
		}
		// Control: the same program without the set-user-ID bit, same user,
		// same library path, loads the library.
		plain := copyClient(t, glibcClient, dir, "client-plain")
		p = start(t, []string{"LD_PRELOAD=" + so}, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", plain}, args...)...)
		if r := checkProc(t, p); !r.Effective || !r.Library.Mapped || r.Binary.SecureExec {
			t.Errorf("control without setuid: %+v", r)
		}
	})
	t.Run("file-capability-binary", func(t *testing.T) {
		testenv.Need(t, "setcap", "setpriv")
		dir := worldReadableDir(t)
		bin := copyClient(t, glibcClient, dir, "client-caps")
		if out, err := exec.Command("setcap", "cap_net_bind_service+ep", bin).CombinedOutput(); err != nil {
			t.Fatalf("setcap: %v\n%s", err, out)
		}
		so, err := Extract(dir, amd64Glibc)
		if err != nil {
			t.Fatal(err)
		}
		// As an unprivileged user, gaining a capability makes ld.so run in
		// secure-execution mode, which ignores LD_PRELOAD paths.
		p := start(t, []string{"LD_PRELOAD=" + so}, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		r := checkProc(t, p)
		wantReason(t, r, false, "secure-execution")
		if !r.Binary.FileCaps || !r.Binary.SecureExec {
			t.Errorf("binary %+v", r.Binary)
		}
	})
	t.Run("no-such-pid", func(t *testing.T) {
		if _, err := Check(1 << 30); err == nil {
			t.Error("Check of a missing pid succeeded")
		}
	})
}

// worldReadableDir is a temporary directory an unprivileged user can read,
// so that secure execution is the only reason the loader skips the library.
// copyClient puts a copy of the client program into dir, executable, for
// a test to give it a set-user-ID bit or file capabilities.
func copyClient(t *testing.T, client, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(client)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func worldReadableDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
