package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// flipper is a real python3 process that holds a loopback connection (both
// ends) with the preload library's keepalive, and turns keepalive off on
// both ends when it gets SIGUSR1: its state changes between two readings.
const flipper = `
import signal, socket, sys
ln = socket.socket(); ln.bind(("127.0.0.1", 0)); ln.listen(1)
c = socket.create_connection(ln.getsockname()); s, _ = ln.accept()
def off(*_):
    for x in (c, s):
        x.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
signal.signal(signal.SIGUSR1, off)
print("ready", flush=True)
sys.stdin.read()
`

// TestDiagnoseScansOnce: one diagnosis reads the sockets once, and the
// preload verdict rests on that reading. The process turns keepalive off
// right after the first reading: a second one would see it off and call the
// library not effective while the rows (from the first) show it on.
func TestDiagnoseScansOnce(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "python3")
	tgt, err := preload.Resolve(preload.Glibc, "")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := preload.Extract(t.TempDir(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "flipper.py")
	if err := os.WriteFile(script, []byte(flipper), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", script)
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib, "KADIAG_KEEPIDLE=30", "KADIAG_ENFORCE=0")
	testenv.StartReady(t, cmd)
	pid := cmd.Process.Pid

	established := func(socks []inspect.Socket) (on, off int) {
		for _, s := range socks {
			if s.State == "ESTABLISHED" {
				if s.Keepalive.Enabled {
					on++
				} else {
					off++
				}
			}
		}
		return on, off
	}
	scans := 0
	scan := func(pids []int, o inspect.Options) (*inspect.Report, error) {
		scans++
		rep, err := inspect.ScanPIDs(pids, o)
		if scans == 1 {
			syscall.Kill(pid, syscall.SIGUSR1)
			flipped := testenv.WaitUntil(10*time.Second, func() bool {
				p, err := inspect.PID(pid, inspect.Options{})
				_, off := established(p.Sockets)
				return err == nil && off == 2
			})
			if !flipped {
				t.Fatal("the process did not turn keepalive off")
			}
		}
		return rep, err
	}
	r, err := Diagnose(pid, Options{Scan: scan})
	if err != nil {
		t.Fatal(err)
	}
	if scans != 1 {
		t.Errorf("one diagnosis read the sockets %d times", scans)
	}
	on, off := established(r.Sockets)
	if on != 2 || off != 0 {
		t.Errorf("rows: %d established sockets with keepalive on, %d off; want the first reading's 2 on", on, off)
	}
	if !r.Preload.Mapped || !r.Preload.Effective || !r.Healthy {
		t.Errorf("preload %+v, healthy %v, problems %q: the verdict contradicts the rows it was given", r.Preload, r.Healthy, r.Problems)
	}
}
