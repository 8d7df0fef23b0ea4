package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
)

var fastLab = []string{"--idle", "3s", "--response-delay", "5s", "--keepidle", "1s", "--keepintvl", "1s", "--timeout", "8s"}

// TestSimulateJSONContract checks the fixed JSON field names of issue 5 on
// a real run.
func TestSimulateJSONContract(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	stdout, stderr, code := runKadiag(t, append([]string{"simulate", "-o", "json", "--scenario", "none,app"}, fastLab...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s, stdout %s", code, stderr, stdout)
	}
	var doc struct {
		Schema    *string  `json:"schema"`
		IdleS     *float64 `json:"idle_s"`
		After     *string  `json:"after"`
		Scale     *float64 `json:"scale"`
		Scenarios []struct {
			Name      *string  `json:"name"`
			Outcome   *string  `json:"outcome"`
			Expected  *string  `json:"expected"`
			Passed    *bool    `json:"passed"`
			ElapsedS  *float64 `json:"elapsed_s"`
			Probes    *int     `json:"probes"`
			Conntrack []struct {
				T     *float64 `json:"t_s"`
				Event *string  `json:"event"`
			} `json:"conntrack"`
		} `json:"scenarios"`
		Summary *struct {
			Scenarios *int `json:"scenarios"`
			Passed    *int `json:"passed"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if doc.Schema == nil || *doc.Schema != "kadiag.simulate/v1" || doc.IdleS == nil || *doc.IdleS != 3 ||
		doc.After == nil || *doc.After != "reset" || doc.Scale == nil || *doc.Scale != 1 ||
		doc.Summary == nil || *doc.Summary.Scenarios != 2 || *doc.Summary.Passed != 2 || len(doc.Scenarios) != 2 {
		t.Fatalf("contract fields missing or wrong:\n%s", stdout)
	}
	for _, s := range doc.Scenarios {
		if s.Name == nil || s.Outcome == nil || s.Expected == nil || s.Passed == nil || s.ElapsedS == nil || s.Probes == nil || len(s.Conntrack) == 0 ||
			s.Conntrack[0].T == nil || s.Conntrack[0].Event == nil || *s.Conntrack[0].Event != "new" {
			t.Errorf("scenario fields missing:\n%s", stdout)
		}
	}
	if *doc.Scenarios[0].Name != "none" || *doc.Scenarios[0].Outcome != "timeout" || *doc.Scenarios[1].Outcome != "ok" {
		t.Errorf("outcomes:\n%s", stdout)
	}
}

func TestSimulateJUnitAndExpect(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	// The server answers within the idle timeout: "none" survives, which is
	// not what it is expected to show, so the check fails (exit 1).
	stdout, stderr, code := runKadiag(t, "simulate", "-o", "junit", "--idle", "5s", "--response-delay", "1s", "--scenario", "none")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal([]byte(stdout), &suites); err != nil || suites.Tests != 1 || suites.Failures != 1 {
		t.Fatalf("junit %+v (%v):\n%s", suites, err, stdout)
	}
	// A user command matching --expect exits 0, one that does not exits 1.
	if _, stderr, code := runKadiag(t, append([]string{"simulate", "--expect", "ok", "--", "true"}, fastLab...)...); code != 0 {
		t.Errorf("true --expect ok: exit %d, stderr %s", code, stderr)
	}
	if _, stderr, code := runKadiag(t, append([]string{"simulate", "--expect", "fail", "--", "true"}, fastLab...)...); code != 1 {
		t.Errorf("true --expect fail: exit %d, stderr %s", code, stderr)
	}
	// --scale cannot reach into the command's own settings: kadiag says so.
	if _, stderr, code := runKadiag(t, "simulate", "--idle", "350s", "--scale", "35", "--response-delay", "35s", "--", "true"); code != 0 || !strings.Contains(stderr, "not scaled") {
		t.Errorf("--scale with a command: exit %d, stderr %q; want a warning that its own settings are not scaled", code, stderr)
	}
}

// TestSimulatePcap: the capture is a pcapng tshark reads, with one
// interface per scenario; an unwritable path is an error before any lab runs.
func TestSimulatePcap(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "tshark")
	t.Parallel()
	pcap := filepath.Join(t.TempDir(), "lab.pcapng")
	_, stderr, code := runKadiag(t, append([]string{"simulate", "--scenario", "none,app", "--pcap", pcap}, fastLab...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out, err := exec.Command("tshark", "-r", pcap, "-Y", "tcp", "-T", "fields", "-e", "frame.interface_name").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		seen[l] = true
	}
	if !seen["none"] || !seen["app"] || len(seen) != 2 {
		t.Errorf("interfaces with TCP in the pcapng: %v, want none and app", seen)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(pcap), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// With real-time defaults a lab would run for minutes: the error must
	// come before any.
	_, stderr, code = runKadiag(t, "simulate", "--scenario", "none", "--pcap", "/nonexistent-dir/lab.pcapng")
	if code != 2 || !strings.Contains(stderr, "--pcap") {
		t.Errorf("unwritable --pcap: exit %d, stderr %q; want exit 2", code, stderr)
	}
}

func TestSimulateBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--scale", "0.5"},
		{"simulate", "--after", "maybe", "--scenario", "none"},
		{"simulate", "--scenario", "nope"},
		{"simulate", "--preset", "aws-natt"},
		{"simulate", "--idle", "soon"},
		{"simulate", "--preload", "--scenario", "none"},
		{"simulate", "--expect", "maybe", "--", "true"},
		{"simulate", "--keepidle", "0.5s", "--scenario", "none"},
	} {
		_, stderr, code := runKadiag(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "kadiag: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

// TestSimulateNotRoot: without the capabilities, one line says so.
func TestSimulateNotRoot(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv")
	bin := buildKadiag(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "simulate", "--scenario", "none")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "needs root") {
		t.Fatalf("as nobody: %v, output %q; want exit 2 and one line saying it needs root", err, out)
	}
}

// TestSimulateSIGKILL kills kadiag in each phase of a lab's life and checks
// that nothing is left: no namespace, no veth, no nftables table, no process;
// for the one-hop lab and for a chain of three hops (five namespaces).
func TestSimulateSIGKILL(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "ip", "nft")
	bin := buildKadiag(t)
	for _, lab := range []struct {
		name string
		args []string
		ns   int
	}{
		{"1-hop", []string{"--idle", "2s"}, 3},
		{"3-hops", []string{"--hop", "idle=2s", "--hop", "idle=3s,after=drop,nat=no", "--hop", "idle=2s,after=heal"}, 5},
	} {
		sigkillEveryPhase(t, bin, lab.name, lab.args, lab.ns)
	}
}

func sigkillEveryPhase(t *testing.T, bin, name string, labArgs []string, nsWant int) {
	for _, tc := range []struct {
		phase string
		args  []string
		pause string
	}{
		{"setup", []string{"--scenario", "none,app"}, "setup"},
		{"running-scenarios", []string{"--scenario", "none,app"}, ""},
		{"running-command", []string{"--", "sh", "-c", "sleep 3001 & sleep 3002"}, ""},
		{"teardown", []string{"--scenario", "app", "--response-delay", "1s"}, "teardown"},
	} {
		t.Run(name+"/"+tc.phase, func(t *testing.T) {
			links, ruleset := hostLinks(t), hostRuleset(t)
			// Running: kadiag's own descendants are the clients (kadiag's
			// command line names them too, so look below it only).
			args := append(append([]string{"simulate"}, labArgs...), "--response-delay", "60s", "--keepidle", "1s")
			cmd, stderr := startAtPhase(t, bin, append(args, tc.args...), tc.pause, func(pid int) bool {
				n := 0
				for _, d := range descendants(pid) {
					b, _ := os.ReadFile("/proc/" + strconv.Itoa(d) + "/cmdline")
					c := strings.ReplaceAll(string(b), "\x00", " ")
					if strings.HasPrefix(c, "sleep 300") || strings.HasPrefix(c, "kadiag-client") {
						n++
					}
				}
				return n >= 2
			})
			go func() {
				for range stderr {
				}
			}()
			pid := cmd.Process.Pid
			lab := labNetns(pid)
			if len(lab) < nsWant {
				t.Errorf("found %d lab namespaces held by kadiag, want at least %d", len(lab), nsWant)
			}
			// Namespace inode numbers are reused at once by namespaces other
			// tests create, so what must vanish is every process that held the
			// lab's namespaces: kadiag and everything it started.
			desc := descendants(pid)
			holders := holdersOf(lab)
			for h := range holders {
				if h != pid && !slices.Contains(desc, h) {
					t.Errorf("lab namespace held by %d, which kadiag did not start", h)
				}
			}
			syscall.Kill(pid, syscall.SIGKILL)
			cmd.Wait()
			gone := testenv.WaitUntil(10*time.Second, func() bool {
				for _, c := range desc {
					if alive(c) {
						return false
					}
				}
				for h := range holdersOf(lab) {
					if holders[h] {
						return false
					}
				}
				return true
			})
			if !gone {
				var left []int
				for _, c := range desc {
					if alive(c) {
						left = append(left, c)
					}
				}
				t.Errorf("after SIGKILL in %s: still alive %v (of %v), namespace holders %v",
					tc.phase, left, desc, holdersOf(lab))
			}
			if l := hostLinks(t); l != links {
				t.Errorf("host links changed:\n%s\n---\n%s", links, l)
			}
			if r := hostRuleset(t); r != ruleset {
				t.Errorf("host ruleset changed:\n%s\n---\n%s", ruleset, r)
			}
		})
	}
}

// startAtPhase starts kadiag with args and returns once it is in the phase
// a test wants: held at phase pause (this test binary, run as kadiag with
// a simulate.Config.Hook, says "test pause" on stderr; see TestMain), or,
// with no pause, the real binary bin once running(pid) holds. It fails the test
// if the phase is not reached within 30 s. The channel carries the rest of
// kadiag's stderr and closes when kadiag closes it.
func startAtPhase(t *testing.T, bin string, args []string, pause string, running func(pid int) bool) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if pause != "" {
		cmd = exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), holdEnv+"="+pause)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	reached := false
	if pause != "" {
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				if strings.Contains(l, "test pause") {
					reached = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
	} else {
		reached = testenv.WaitUntil(30*time.Second, func() bool { return running(cmd.Process.Pid) })
	}
	if !reached {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v: kadiag never reached phase %q", args, pause)
	}
	return cmd, lines
}

func hostLinks(t *testing.T) string {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 2 {
			names = append(names, f[1])
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func hostRuleset(t *testing.T) string {
	out, err := exec.Command("nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// labNetns is the namespaces kadiag holds other than the host's own (it
// lives in the host's; every other namespace fd it has is a lab's).
// Comparing against an earlier snapshot would not do: namespace inode
// numbers are reused as soon as other tests free theirs.
func labNetns(pid int) map[string]bool {
	host, _ := os.Readlink("/proc/self/ns/net")
	m := map[string]bool{}
	fds, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "net:[") && l != host {
			m[l] = true
		}
	}
	return m
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range childrenOf(p) {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// holdersOf lists the processes in, or holding an fd of, any of the
// namespaces.
func holdersOf(ns map[string]bool) map[int]bool {
	m := map[int]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if l, err := os.Readlink(p + "/ns/net"); err == nil && ns[l] {
			m[pid] = true
		}
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && ns[l] {
				m[pid] = true
			}
		}
	}
	return m
}

func childrenOf(pid int) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(strings.Split(p, "/")[2])
			out = append(out, c)
		}
	}
	return out
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// TestSimulateCommandPreload runs curl --no-keepalive through the binary:
// it hangs without the library and gets its 200 with --preload, and the
// full scenario set (which needs the bundled library) passes.
func TestSimulateCommandPreload(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "curl")
	t.Parallel()
	curl := []string{"--", "curl", "-sS", "--no-keepalive", "-o", "/dev/null", "-w", "code=%{http_code}", "{url}"}
	stdout, stderr, code := runKadiag(t, append(append([]string{"simulate", "--expect", "fail"}, fastLab...), curl...)...)
	if code != 0 || !strings.Contains(stdout, "timeout") {
		t.Errorf("curl without the library: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = runKadiag(t, append(append([]string{"simulate", "--preload", "--expect", "ok"}, fastLab...), curl...)...)
	if code != 0 || !strings.Contains(stdout, "code=200") {
		t.Errorf("curl with --preload: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = runKadiag(t, append([]string{"simulate", "--after", "drop"}, fastLab...)...)
	if code != 0 || !strings.Contains(stdout, "5/5 scenarios as expected") {
		t.Errorf("all scenarios: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestSimulatePresetOverride: a preset sets idle and after-expiry
// behaviour, explicit flags win.
func TestSimulatePresetOverride(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		idle  time.Duration
		after string
		scale float64
	}{
		{[]string{"--preset", "gcp-nat"}, 1200 * time.Second, "drop", 1},
		{[]string{"--preset", "gcp-nat", "--after", "reset"}, 1200 * time.Second, "reset", 1},
		{[]string{"--preset", "aws-nat", "--idle", "60s", "--scale", "35"}, 60 * time.Second, "reset", 35},
		{[]string{"--idle", "azure-lb"}, 240 * time.Second, "drop", 1},
		{[]string{"--preset", "linux-default"}, 432000 * time.Second, "heal", 1},
	} {
		var f simulateFlags
		cmd := simulateCmd(&f)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := simulateConfig(cmd, &f, nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.Idle != tc.idle || string(cfg.After) != tc.after || cfg.Scale != tc.scale {
			t.Errorf("%v: idle %v after %s scale %v, want %v %s %v", tc.args, cfg.Idle, cfg.After, cfg.Scale, tc.idle, tc.after, tc.scale)
		}
	}
}

// TestSimulateInterrupt: SIGINT or SIGTERM tears the labs down and ends
// with one line and exit 2.
func TestSimulateInterrupt(t *testing.T) {
	testenv.Privileged(t)
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(buildKadiag(t), "simulate", "--idle", "3s", "--response-delay", "60s", "--scenario", "none,app")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		if !testenv.WaitUntil(20*time.Second, func() bool { return len(descendants(pid)) >= 2 }) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%v: the clients never started", sig)
		}
		desc := descendants(pid)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "interrupted") || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("%v: %v, stderr %q; want exit 2 and one line", sig, err, stderr.String())
		}
		for _, d := range desc {
			if alive(d) {
				t.Errorf("%v: process %d outlived kadiag", sig, d)
			}
		}
	}
}
