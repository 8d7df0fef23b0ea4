package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kadiag/kadiag/internal/bpf"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// A scanner started with fewer capabilities (setpriv): it scans the pids
// given in KADIAG_BPF_SCAN with --explain-source and prints the JSON.
func init() {
	v := os.Getenv("KADIAG_BPF_SCAN")
	if v == "" {
		return
	}
	var pids []int
	for _, f := range strings.Split(v, ",") {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	r, err := ScanPIDs(pids, Options{ExplainSource: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

// bpfSpecs are the sockets the getsockopt oracle tests cover: IPv4, IPv6,
// MPTCP, listeners, keepalive off, on with the namespace's defaults,
// custom, TCP_USER_TIMEOUT.
func bpfSpecs(l *lab) []string {
	s4 := l.link.A4 + ":8080"
	s6 := "[" + l.link.A6 + "]:8080"
	return []string{
		"dial4," + s4,
		"dial4," + s4 + ",ka=1",
		"dial6," + s6 + ",ka=1,idle=30,intvl=5,cnt=3",
		"dial6," + s6 + ",ka=1,idle=20,intvl=2,cnt=4,ut=5000",
		"listen4,0.0.0.0:9090,ka=1,idle=45,intvl=7,cnt=2,ut=3000",
		"listen6,[::]:9091",
		"listen4,0.0.0.0:9092,mptcp,ka=1,idle=44,intvl=6,cnt=5",
		"dial4," + l.link.A4 + ":8082,mptcp,ka=1,idle=31,intvl=4,cnt=2",
		"dial4," + l.link.A4 + ":8082,mptcp",
	}
}

// TestBPFEqualsGetsockopt: every socket the BPF path reads has, field by
// field, the values getsockopt reads inside the process and the values the
// pidfd path reads, and says source "bpf": read through the descriptors,
// and read by walking the namespace with iter/tcp, as on a kernel without
// bpf_rdonly_cast.
func TestBPFEqualsGetsockopt(t *testing.T) {
	t.Run("descriptors", func(t *testing.T) { testBPFEqualsGetsockopt(t, 79, "reads each socket through its descriptor") })
	t.Run("namespace walk", func(t *testing.T) {
		undo := bpf.TestingWithoutCast()
		reloadReaders()
		defer func() { undo(); reloadReaders() }()
		testBPFEqualsGetsockopt(t, 78, "iter/tcp walked 1 namespace for sockets")
	})
}

// reloadReaders makes the next scan load its BPF programs anew.
func reloadReaders() {
	readers.Lock()
	if readers.files != nil {
		readers.files.Close()
	}
	readers.loaded, readers.loadedReaders = false, loadedReaders{}
	readers.Unlock()
}

func testBPFEqualsGetsockopt(t *testing.T, lab int, how string) {
	l := newLab(t, lab)
	sysctl(t, l.client, "tcp_keepalive_time", 900)
	sysctl(t, l.client, "tcp_keepalive_intvl", 40)
	sysctl(t, l.client, "tcp_keepalive_probes", 6)
	start(t, helper(l.server, "serve,0.0.0.0:8082,mptcp"))
	client := start(t, helper(l.client, bpfSpecs(l)...))
	viaBPF, err := ScanPIDs([]int{client.pid}, Options{ExplainSource: true})
	if err != nil {
		t.Fatal(err)
	}
	viaPidfd, err := ScanPIDs([]int{client.pid}, Options{noBPF: true})
	if err != nil {
		t.Fatal(err)
	}
	b, p := byFD(viaBPF.Processes[0]), byFD(viaPidfd.Processes[0])
	for _, hs := range client.sockets {
		sk, ok := b[hs.FD]
		if !ok {
			t.Errorf("fd %d (%s) missing", hs.FD, hs.Spec)
			continue
		}
		checkExact(t, sk, hs)
		if sk.Keepalive.Source != BPF {
			t.Errorf("fd %d (%s): source %q, want bpf", hs.FD, hs.Spec, sk.Keepalive.Source)
		}
		ref := p[hs.FD]
		if ref.Keepalive.Source != Exact {
			t.Errorf("fd %d (%s): pidfd path source %q", hs.FD, hs.Spec, ref.Keepalive.Source)
		}
		got, want := sk.Keepalive, ref.Keepalive
		got.Source, want.Source = "", ""
		// The timer runs between the two scans.
		got.NextProbeMs, want.NextProbeMs = 0, 0
		if got != want || sk.Protocol != ref.Protocol || sk.Inode != ref.Inode || sk.State != ref.State {
			t.Errorf("fd %d (%s): bpf %s %+v, getsockopt %s %+v", hs.FD, hs.Spec, sk.Protocol, got, ref.Protocol, want)
		}
		if mptcp := strings.Contains(hs.Spec, "mptcp"); mptcp != (sk.Protocol == "mptcp") || mptcp != sk.Keepalive.UserTimeoutUnsupported {
			t.Errorf("fd %d (%s): protocol %s, user timeout unsupported %v", hs.FD, hs.Spec, sk.Protocol, sk.Keepalive.UserTimeoutUnsupported)
		}
	}
	if len(viaBPF.Notes) != 1 || !strings.Contains(viaBPF.Notes[0], "source: BPF iterators") || !strings.Contains(viaBPF.Notes[0], how) ||
		!strings.Contains(viaBPF.Notes[0], fmt.Sprintf("%d bpf, 0 getsockopt", len(client.sockets))) {
		t.Errorf("notes %q: want one explaining the BPF path and counting %d bpf sockets", viaBPF.Notes, len(client.sockets))
	}
}

// TestBPFFallbackWithoutCapabilities: root without CAP_BPF, CAP_PERFMON and
// CAP_SYS_ADMIN (dropped by setpriv in a subprocess) still reads exactly,
// through pidfd_getfd, and --explain-source says why.
func TestBPFFallbackWithoutCapabilities(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv")
	// In the host's namespace on loopback: without CAP_SYS_ADMIN the
	// scanner cannot enter another.
	h := exec.Command(os.Args[0], "listen4,127.0.0.1:0,ka=1,idle=23,intvl=4,cnt=3,ut=1500", "listen6,[::1]:0")
	h.Env = append(os.Environ(), "KADIAG_SOCK_HELPER=1")
	helperProc := start(t, h)
	for _, c := range []struct {
		name, drop, source, why string
	}{
		{"no CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN", "-bpf,-perfmon,-sys_admin", "getsockopt", "BPF iterators not used: read sockets through BPF iterators: missing CAP_BPF, CAP_PERFMON"},
		{"no CAP_PERFMON, CAP_SYS_ADMIN", "-perfmon,-sys_admin", "getsockopt", "BPF iterators not used: read sockets through BPF iterators: missing CAP_PERFMON:"},
		{"no CAP_SYS_ADMIN", "-sys_admin", "bpf", "kadiag has CAP_BPF and CAP_PERFMON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("setpriv", "--inh-caps="+c.drop, "--bounding-set="+c.drop, os.Args[0])
			cmd.Env = append(os.Environ(), "KADIAG_BPF_SCAN="+strconv.Itoa(helperProc.pid))
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("%v: %s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			var r Report
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			fds := byFD(r.Processes[0])
			for _, hs := range helperProc.sockets {
				sk := fds[hs.FD]
				checkExact(t, sk, hs)
				if string(sk.Keepalive.Source) != c.source {
					t.Errorf("fd %d: source %q, want %s", hs.FD, sk.Keepalive.Source, c.source)
				}
			}
			if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], c.why) || !strings.Contains(r.Notes[0], "source: ") {
				t.Errorf("notes %q: want one saying %q", r.Notes, c.why)
			}
		})
	}
}
