package exporter

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kadiag/kadiag/internal/testenv"
)

// listenerWithComm starts a real process that listens on a loopback port
// after renaming itself (as prctl(PR_SET_NAME) does) to the bytes of comm.
func listenerWithComm(t *testing.T, comm string) int {
	t.Helper()
	testenv.Need(t, "python3")
	const prog = `import socket, sys
name = bytes.fromhex(sys.argv[1])
with open("/proc/self/comm", "wb") as f:
    f.write(name)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("ready", flush=True)
sys.stdin.read()
`
	cmd := exec.Command("python3", "-c", prog, hexOf(comm))
	out, _ := cmd.StdoutPipe()
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "ready\n" {
		t.Fatalf("listener: %q", l)
	}
	return cmd.Process.Pid
}

func hexOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
	}
	return b.String()
}

// A process whose comm is not valid UTF-8 (here the kernel's 15-byte cut
// inside a character, and raw 0xff bytes with a newline) is labelled with
// the cleaned name, and the processes after it in the scan stay in
// /metrics: one name never blinds the exporter.
func TestHostileComm(t *testing.T) {
	testenv.Privileged(t)
	hostile := []string{"abcdefghijkl\xe6\x95", "\xff\xfe\nevil"}
	want := []string{`abcdefghijkl\xe6\x95`, `\xff\xfe\x0aevil`}
	var pids []int
	for _, c := range hostile {
		pids = append(pids, listenerWithComm(t, c))
	}
	// A well-named process started last has the highest pid: on the old
	// code it came after the hostile ones and vanished with them.
	pids = append(pids, listenerWithComm(t, "kadiag-honest"))
	want = append(want, "kadiag-honest")

	e := New(Options{Interval: time.Hour, PerProcess: true})
	if _, err := e.ScanOnce(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "kadiag_tcp_sockets" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got[l["pid"]] = l["comm"]
		}
	}
	for i, pid := range pids {
		if c, ok := got[strconv.Itoa(pid)]; !ok || c != want[i] {
			t.Errorf("pid %d: comm label %q (present %v), want %q", pid, c, ok, want[i])
		}
	}
	if problems, err := testutil.CollectAndLint(e); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// A metric the library refuses (here: a label value count that does not
// match) is sent as an invalid metric: the scrape reports it and the
// series after it are still there.
func TestEmitRefusedMetric(t *testing.T) {
	d := prometheus.NewDesc("kadiag_test_gauge", "test", []string{"a"}, nil)
	c := collectFunc(func(ch chan<- prometheus.Metric) {
		emit(ch, d, prometheus.GaugeValue, 1, "x", "too many")
		emit(ch, d, prometheus.GaugeValue, 2, "\xffafter")
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "kadiag_test_gauge") {
		t.Fatalf("the refused metric was not reported: %v", err)
	}
	if len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 || mfs[0].GetMetric()[0].GetLabel()[0].GetValue() != `\xffafter` {
		t.Fatalf("the metric after the refused one: %+v", mfs)
	}
}

type collectFunc func(chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
