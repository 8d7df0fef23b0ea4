package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/doctor"
	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

// doctorRun runs `kadiag doctor --pid N -o json` and decodes the result.
func doctorRun(t *testing.T, pid int, args ...string) (doctor.Result, string, int) {
	t.Helper()
	stdout, stderr, code := runKadiag(t, append([]string{"doctor", "--pid", strconv.Itoa(pid), "-o", "json"}, args...)...)
	var r doctor.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("doctor -o json: %v\n%s\n%s", err, stdout, stderr)
	}
	table, _, _ := runKadiag(t, append([]string{"doctor", "--pid", strconv.Itoa(pid)}, args...)...)
	return r, table, code
}

func fixKinds(r doctor.Result) string {
	var k []string
	for _, f := range r.Fixes {
		k = append(k, f.Kind)
	}
	return strings.Join(k, ",")
}

// buildC compiles testdata/hold.c with cc and extra flags.
func buildC(t *testing.T, cc string, flags ...string) string {
	t.Helper()
	testenv.Need(t, cc)
	out := filepath.Join(t.TempDir(), "hold-"+cc)
	args := append(append([]string{}, flags...), "-o", out, "testdata/hold.c")
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, b)
	}
	os.Chmod(filepath.Dir(out), 0o755)
	return out
}

// TestDoctorRuntimes diagnoses real clients of each runtime holding an idle
// connection with keepalive off across a veth pair: each is at risk (exit 1)
// and gets the fix of its own runtime.
func TestDoctorRuntimes(t *testing.T) {
	l := newSockLab(t, 71)
	testenv.Need(t, "java", "musl-gcc", "gcc")
	goBin := filepath.Join(t.TempDir(), "goclient")
	if b, err := exec.Command("go", "build", "-o", goBin, "./testdata/goclient").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	static := buildC(t, "musl-gcc", "-static", "-O1")
	muslDynamic := buildC(t, "musl-gcc", "-O1")
	tests := []struct {
		name    string
		cmd     []string
		kind    string
		version string
		fixes   string
		check   func(t *testing.T, r doctor.Result)
	}{
		{"java", []string{"java", "testdata/KeepaliveClient.java", l.link.A4, "8080"}, doctor.KindJVM, "17", "env,java,fix,sysctl",
			func(t *testing.T, r doctor.Result) {
				if !strings.HasPrefix(r.Runtime.JavaHome, "/usr/lib/jvm/") {
					t.Errorf("java home %q", r.Runtime.JavaHome)
				}
			}},
		{"python", []string{python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"}, doctor.KindPython, "3.", "env,python,fix,sysctl", nil},
		{"go", []string{goBin, l.link.A4 + ":8080"}, doctor.KindGo, runtime.Version(), "fix,go,sysctl",
			func(t *testing.T, r doctor.Result) {
				if r.Runtime.Go == nil || r.Runtime.Go.Path != "github.com/kadiag/kadiag/cmd/kadiag/testdata/goclient" {
					t.Errorf("go build info %+v", r.Runtime.Go)
				}
			}},
		{"musl", []string{muslDynamic, l.link.A4, "8080"}, doctor.KindNative, "", "env,fix,sysctl",
			func(t *testing.T, r doctor.Result) {
				if r.Runtime.Libc != "musl" || r.Runtime.Static || !strings.Contains(r.Fixes[0].Text, "--libc musl") {
					t.Errorf("musl program seen as %+v, fix %q", r.Runtime, r.Fixes[0].Text)
				}
			}},
		{"static", []string{static, l.link.A4, "8080"}, doctor.KindNative, "", "fix,rebuild,sysctl",
			func(t *testing.T, r doctor.Result) {
				if !r.Runtime.Static || r.Preload.Possible {
					t.Errorf("static binary seen as %+v, preload %+v", r.Runtime, r.Preload)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, _ := startReady(t, l.client.Command(tt.cmd[0], tt.cmd[1:]...))
			r, table, code := doctorRun(t, pid)
			if code != 1 || r.Healthy || r.Summary.AtRisk == 0 {
				t.Errorf("exit %d, healthy %v, at risk %d; want 1, false, >0\n%s", code, r.Healthy, r.Summary.AtRisk, table)
			}
			if r.Runtime.Kind != tt.kind || !strings.HasPrefix(r.Runtime.Version, tt.version) {
				t.Errorf("runtime %s %q, want %s %q", r.Runtime.Kind, r.Runtime.Version, tt.kind, tt.version)
			}
			if got := fixKinds(r); got != tt.fixes {
				t.Errorf("fixes %s, want %s\n%s", got, tt.fixes, table)
			}
			last := r.Fixes[len(r.Fixes)-1]
			if last.Kind != "sysctl" || !strings.Contains(last.Why, "keepalive off, so no sysctl value makes them send a probe") {
				t.Errorf("sysctl fix %+v", last)
			}
			if r.Sysctl.KeepaliveTime != 7200 || r.Container.InContainer {
				t.Errorf("sysctl %+v, container %+v", r.Sysctl, r.Container)
			}
			if !strings.Contains(table, "AT RISK") || !strings.Contains(table, "fix 1:") {
				t.Errorf("table:\n%s", table)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestDoctorPreloadEffective: a dynamic C client and python3 started with
// the real library (extracted as users do) are healthy, exit 0, and the
// library is reported loaded and effective.
func TestDoctorPreloadEffective(t *testing.T) {
	l := newSockLab(t, 72)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	tgt, err := preload.Resolve(preload.Glibc, "")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := preload.Extract(dir, tgt)
	if err != nil {
		t.Fatal(err)
	}
	glibc := buildC(t, "gcc", "-O1")
	for name, argv := range map[string][]string{"c": {glibc, l.link.A4, "8080"}, "python": {python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"}} {
		t.Run(name, func(t *testing.T) {
			cmd := l.client.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib, "KADIAG_KEEPIDLE=30")
			pid, _ := startReady(t, cmd)
			r, table, code := doctorRun(t, pid)
			if code != 0 || !r.Healthy || !r.Preload.Effective || !r.Preload.Mapped || r.Preload.Path != lib {
				t.Errorf("exit %d healthy %v preload %+v\n%s", code, r.Healthy, r.Preload, table)
			}
			for _, s := range r.Sockets {
				if s.Remote != "" && s.State == "ESTABLISHED" && (!s.Keepalive.Enabled || s.Keepalive.IdleS > 30) {
					t.Errorf("socket %+v lacks the library's keepalive (idle at most 30s)", s)
				}
			}
			if !strings.Contains(table, "preload:   loaded and effective ("+lib+")") {
				t.Errorf("table:\n%s", table)
			}
		})
	}
}

// TestDoctorKubernetes: KUBERNETES_SERVICE_HOST in the process's environment
// makes it a pod, and the fix is the pod patch.
func TestDoctorKubernetes(t *testing.T) {
	l := newSockLab(t, 73)
	cmd := l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080")
	cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=198.18.0.1")
	pid, _ := startReady(t, cmd)
	r, table, code := doctorRun(t, pid, "--container", "web", "--max-idle", "azure-lb")
	if code != 1 || !r.Container.Kubernetes || r.Container.ServiceHost != "198.18.0.1" {
		t.Errorf("exit %d container %+v", code, r.Container)
	}
	if got := fixKinds(r); got != "env,kubernetes,python,fix,sysctl" {
		t.Errorf("fixes %s", got)
	}
	if r.MaxIdleS != 240 || !strings.Contains(r.Fixes[1].Text, "--container web") {
		t.Errorf("max idle %d, k8s fix %q", r.MaxIdleS, r.Fixes[1].Text)
	}
	if !strings.Contains(table, "Kubernetes pod") {
		t.Errorf("table:\n%s", table)
	}
}

func TestDoctorErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"doctor"}, "--pid is required"},
		{[]string{"doctor", "--pid", "999999999"}, "no such process"},
		{[]string{"doctor", "--pid", "1", "--max-idle", "soon"}, "--max-idle"},
	} {
		_, stderr, code := runKadiag(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("kadiag %v: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestDoctorExtractCommandRuns runs, exactly as printed, the extract command
// doctor prescribes and the one the help shows, on a machine without
// /usr/local/lib/kadiag (a private mount namespace with an empty tmpfs on
// /usr/local): both create the directory, mode 0755, and write the library.
func TestDoctorExtractCommandRuns(t *testing.T) {
	l := newSockLab(t, 75)
	testenv.Need(t, "unshare", "sh")
	pid, _ := startReady(t, l.client.Command(python3(t), "testdata/keepalive_client.py", l.link.A4, "8080"))
	r, table, _ := doctorRun(t, pid)
	var prescribed string
	for _, f := range r.Fixes {
		for _, line := range strings.Split(f.Text, "\n") {
			if strings.HasPrefix(line, "kadiag preload extract ") && prescribed == "" {
				prescribed = line
			}
		}
	}
	if !strings.Contains(prescribed, " --dir /usr/local/lib/kadiag ") {
		t.Fatalf("doctor prescribes %q, want an extract into /usr/local/lib/kadiag\n%s", prescribed, table)
	}
	help, _, _ := runKadiag(t, "preload", "extract", "--help")
	var example string
	for _, line := range strings.Split(help, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "kadiag preload extract --dir /usr/local/lib/kadiag") {
			example = line
			break
		}
	}
	if example == "" {
		t.Fatalf("the help shows no extract into /usr/local/lib/kadiag:\n%s", help)
	}
	bin := buildKadiag(t)
	for what, command := range map[string]string{"doctor's fix": prescribed, "help example": example} {
		t.Run(what, func(t *testing.T) {
			// kadiag is a function in the shell, so the line runs verbatim.
			script := `set -e
mount -t tmpfs kadiag-test /usr/local
test ! -e /usr/local/lib
kadiag() { "$KADIAG" "$@"; }
` + command + `
stat -c '%a %n' /usr/local/lib /usr/local/lib/kadiag /usr/local/lib/kadiag/` + preload.LibraryName
			cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
			cmd.Env = append(os.Environ(), "KADIAG="+bin)
			out, err := cmd.CombinedOutput()
			want := "/usr/local/lib/kadiag/" + preload.LibraryName + "\n" +
				"755 /usr/local/lib\n755 /usr/local/lib/kadiag\n755 /usr/local/lib/kadiag/" + preload.LibraryName + "\n"
			if err != nil || string(out) != want {
				t.Errorf("%s\n%s: %v\n%s\nwant\n%s", command, script, err, out, want)
			}
		})
	}
}
