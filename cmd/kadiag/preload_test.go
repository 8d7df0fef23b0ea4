package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/testenv"
	"github.com/kadiag/kadiag/preload"
)

func TestPreloadExtract(t *testing.T) {
	dir := t.TempDir()
	// A symlink at the final name must be replaced, not written through.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, preload.LibraryName)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		libc, arch string
		target     preload.Target
	}{{"glibc", "amd64", preload.Target{Libc: preload.Glibc, Arch: "amd64"}}, {"musl", "amd64", preload.Target{Libc: preload.Musl, Arch: "amd64"}}, {"glibc", "arm64", preload.Target{Libc: preload.Glibc, Arch: "arm64"}}} {
		stdout, stderr, code := runKadiag(t, "preload", "extract", "--dir", dir, "--libc", tc.libc, "--arch", tc.arch)
		if code != 0 {
			t.Fatalf("extract %s/%s: exit %d, %s", tc.libc, tc.arch, code, stderr)
		}
		path := strings.TrimSpace(stdout)
		if path != filepath.Join(dir, preload.LibraryName) || !filepath.IsAbs(path) {
			t.Errorf("printed %q", stdout)
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want a regular file with mode 0755", path, fi.Mode(), err)
		}
		got, _ := os.ReadFile(path)
		want, _ := preload.Library(tc.target)
		if !bytes.Equal(got, want) {
			t.Errorf("extracted %s/%s differs from the embedded library", tc.libc, tc.arch)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("extract wrote through a symlink: victim now %d bytes", len(b))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("leftover files in %s: %v", dir, ents)
	}
	stdout, _, code := runKadiag(t, "-o", "json", "preload", "extract", "--dir", dir, "--libc", "auto")
	var j map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &j) != nil || j["path"] != filepath.Join(dir, preload.LibraryName) || j["schema"] != "kadiag.preload.extract/v1" {
		t.Errorf("json extract: exit %d, %s", code, stdout)
	}

	for _, args := range [][]string{
		{"preload", "extract"},
		{"preload", "extract", "--dir", filepath.Join(dir, preload.LibraryName)},
		{"preload", "extract", "--dir", dir, "--libc", "bionic"},
		{"preload", "extract", "--dir", dir, "--libc", "musl", "--arch", "arm64"},
		{"preload", "env", "--count", "128"},
		{"preload", "env", "--idle", "40000s"},
		{"preload", "env", "--interval", "abc"},
		{"preload", "env", "--format", "yaml"},
		{"preload", "env", "--lib", "libkadiag_keepalive.so"},
		{"preload", "check"},
		{"preload", "check", "--pid", "1073741824"},
	} {
		_, stderr, code := runKadiag(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "kadiag: ") {
			t.Errorf("kadiag %v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

func buildTestClient(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "gcc")
	bin := filepath.Join(t.TempDir(), "client")
	if out, err := exec.Command("gcc", "-O1", "-pthread", "-o", bin, "../../preload/testdata/client.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

func holdListener(t *testing.T) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestPreloadEnvShell: what 'preload env' prints, evaluated by a real shell,
// makes a real client carry the requested values.
func TestPreloadEnvShell(t *testing.T) {
	testenv.Privileged(t)
	bin := buildTestClient(t)
	dir := t.TempDir()
	so, _, code := runKadiag(t, "preload", "extract", "--dir", dir, "--libc", "glibc")
	if code != 0 {
		t.Fatal("extract failed")
	}
	env, stderr, code := runKadiag(t, "preload", "env", "--lib", strings.TrimSpace(so), "--idle", "2m", "--interval", "7", "--count", "3", "--user-timeout", "1500ms")
	if code != 0 {
		t.Fatalf("env: %s", stderr)
	}
	host, port, _ := net.SplitHostPort(holdListener(t))
	cmd := exec.Command("sh", "-c", env+"\nexec \"$0\" tcp4 \"$1\" \"$2\" _ </dev/null", bin, host, port)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if want := "connected keepalive=1 idle=120 intvl=7 cnt=3 user_timeout=1500"; strings.TrimSpace(string(out)) != want {
		t.Errorf("client printed %q, want %q (env was:\n%s)", out, want, env)
	}

	docker, _, code := runKadiag(t, "preload", "env", "--format", "docker", "--lib", "/x/libkadiag_keepalive.so")
	if code != 0 || !strings.Contains(docker, "\nLD_PRELOAD=/x/libkadiag_keepalive.so\n") || !strings.Contains(docker, "KADIAG_KEEPIDLE=60\n") {
		t.Errorf("docker env-file:\n%s", docker)
	}
	k8s, _, code := runKadiag(t, "preload", "env", "--format", "k8s", "--container", "web", "--libc", "musl", "--image", "registry.example/kadiag:1")
	for _, want := range []string{"initContainers:", `image: "registry.example/kadiag:1"`, `"--libc", "musl"`, `- name: "web"`, "emptyDir: {}",
		`value: "/kadiag-preload/libkadiag_keepalive.so"`, "- name: KADIAG_KEEPCNT"} {
		if code != 0 || !strings.Contains(k8s, want) {
			t.Errorf("k8s patch lacks %q:\n%s", want, k8s)
		}
	}
	checkK8sPatch(t, k8s)
	kubectlMerge(t, k8s)
	js, _, code := runKadiag(t, "-o", "json", "preload", "env", "--no-enforce")
	var r struct {
		Schema string           `json:"schema"`
		Env    []preload.EnvVar `json:"env"`
	}
	if code != 0 || json.Unmarshal([]byte(js), &r) != nil || r.Schema != "kadiag.preload.env/v1" || len(r.Env) != 5 || r.Env[4] != (preload.EnvVar{Name: "KADIAG_ENFORCE", Value: "0"}) {
		t.Errorf("json env: %s", js)
	}
}

// TestPreloadCheckExit: exit 0 for a process the library works in, 1 for
// one without it, with the JSON contract.
func TestPreloadCheckExit(t *testing.T) {
	testenv.Privileged(t)
	bin := buildTestClient(t)
	so, _, _ := runKadiag(t, "preload", "extract", "--dir", t.TempDir(), "--libc", "glibc")
	host, port, _ := net.SplitHostPort(holdListener(t))
	for _, tc := range []struct {
		env  []string
		code int
	}{{[]string{"LD_PRELOAD=" + strings.TrimSpace(so)}, 0}, {nil, 1}} {
		cmd := exec.Command(bin, "tcp4", host, port, "_")
		cmd.Env = append(os.Environ(), tc.env...)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line := make(chan string, 1)
		go func() { s, _ := bufio.NewReader(stdout).ReadString('\n'); line <- s }()
		select {
		case <-line:
		case <-time.After(10 * time.Second):
			t.Fatal("client printed nothing")
		}
		pid := strconv.Itoa(cmd.Process.Pid)
		out, stderr, code := runKadiag(t, "preload", "check", "--pid", pid)
		if code != tc.code {
			t.Errorf("check %v: exit %d, want %d\n%s%s", tc.env, code, tc.code, out, stderr)
		}
		js, _, _ := runKadiag(t, "-o", "json", "preload", "check", "--pid", pid)
		var r struct {
			Schema    string `json:"schema"`
			Effective bool   `json:"effective"`
			Sockets   []struct {
				Keepalive bool `json:"keepalive"`
				Idle      int  `json:"idle_s"`
			} `json:"sockets"`
		}
		if err := json.Unmarshal([]byte(js), &r); err != nil || r.Schema != "kadiag.preload.check/v1" || r.Effective != (tc.code == 0) || len(r.Sockets) != 1 {
			t.Errorf("json check: %v %s", err, js)
		} else if tc.code == 0 && (!r.Sockets[0].Keepalive || r.Sockets[0].Idle != 60) {
			t.Errorf("json check sockets: %s", js)
		}
		if tc.code == 0 {
			// The same process through `kadiag sockets`, as a user would look.
			js, stderr, _ := runKadiag(t, "-o", "json", "sockets", "--pid", pid)
			var sr struct {
				Processes []struct {
					Sockets []struct {
						Keepalive struct {
							Enabled   bool   `json:"enabled"`
							IdleS     int    `json:"idle_s"`
							IntervalS int    `json:"interval_s"`
							Count     int    `json:"count"`
							Source    string `json:"source"`
						} `json:"keepalive"`
					} `json:"sockets"`
				} `json:"processes"`
			}
			if err := json.Unmarshal([]byte(js), &sr); err != nil || len(sr.Processes) != 1 || len(sr.Processes[0].Sockets) != 1 {
				t.Errorf("kadiag sockets: %v %s %s", err, js, stderr)
			} else if k := sr.Processes[0].Sockets[0].Keepalive; !k.Enabled || k.IdleS != 60 || k.IntervalS != 15 || k.Count != 4 || (k.Source != "bpf" && k.Source != "getsockopt") {
				t.Errorf("kadiag sockets sees %+v, want keepalive 60/15/4 from getsockopt", k)
			}
		}
		junit, _, _ := runKadiag(t, "-o", "junit", "preload", "check", "--pid", pid)
		if !strings.Contains(junit, "<testsuites") || strings.Contains(junit, "<failure") != (tc.code != 0) {
			t.Errorf("junit:\n%s", junit)
		}
		stdin.Close()
		cmd.Wait()
	}
}

// checkK8sPatch parses the patch with PyYAML (python3-yaml), an oracle for
// the YAML we write by hand, and checks the pieces a strategic merge needs.
func checkK8sPatch(t *testing.T, patch string) {
	t.Helper()
	testenv.Need(t, "python3")
	cmd := exec.Command("python3", "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))")
	cmd.Stdin = strings.NewReader(patch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No module named 'yaml'") {
			testenv.SkipOrFail(t, "needs python3-yaml")
		}
		t.Fatalf("PyYAML rejects the patch: %v\n%s\n%s", err, out, patch)
	}
	type env struct{ Name, Value string }
	type mount struct {
		Name      string
		MountPath string
		ReadOnly  bool
	}
	type container struct {
		Name         string
		Image        string
		Command      []string
		VolumeMounts []mount
		Env          []env
	}
	var p struct {
		Spec struct {
			Template struct {
				Spec struct {
					Volumes []struct {
						Name     string
						EmptyDir map[string]any
					}
					InitContainers []container
					Containers     []container
				}
			}
		}
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	ps := p.Spec.Template.Spec
	if len(ps.Volumes) != 1 || ps.Volumes[0].EmptyDir == nil || len(ps.InitContainers) != 1 || len(ps.Containers) != 1 {
		t.Fatalf("patch structure: %+v", ps)
	}
	init, app := ps.InitContainers[0], ps.Containers[0]
	mountPath := init.VolumeMounts[0].MountPath
	if strings.Join(init.Command[:4], " ") != "kadiag preload extract --dir" || init.Command[4] != mountPath {
		t.Errorf("initContainer command %q does not extract into the volume at %s", init.Command, mountPath)
	}
	if app.Name != "web" || len(app.VolumeMounts) != 1 || app.VolumeMounts[0].MountPath != mountPath || !app.VolumeMounts[0].ReadOnly {
		t.Errorf("application container %+v", app)
	}
	if len(app.Env) == 0 || app.Env[0] != (env{"LD_PRELOAD", mountPath + "/" + preload.LibraryName}) {
		t.Errorf("application env %+v", app.Env)
	}
}

// kubectlMerge applies the patch offline with kubectl's own strategic merge
// when kubectl is installed (it is not a Debian package CI installs): the
// application container keeps its env and gains ours, other containers stay.
func kubectlMerge(t *testing.T, patch string) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Log("kubectl not installed: strategic merge not checked")
		return
	}
	dir := t.TempDir()
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},
"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"eclipse-temurin:17","env":[{"name":"FOO","value":"bar"}]},{"name":"sidecar","image":"busybox"}]}}}}`
	if err := os.WriteFile(filepath.Join(dir, "dep.json"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "patch.yaml"), []byte(patch), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "patch", "-f", filepath.Join(dir, "dep.json"), "--local", "--type", "strategic",
		"--patch-file", filepath.Join(dir, "patch.yaml"), "-o", "json").Output()
	if err != nil {
		t.Logf("kubectl patch --local unavailable here (%v): strategic merge not checked", err)
		return
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []struct{ Name string }
					Containers     []struct {
						Name string
						Env  []struct{ Name, Value string }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	ps := d.Spec.Template.Spec
	var names []string
	if len(ps.Containers) == 2 {
		for _, e := range ps.Containers[0].Env {
			names = append(names, e.Name)
		}
	}
	if len(ps.InitContainers) != 1 || len(ps.Containers) != 2 || !strings.Contains(strings.Join(names, ","), "LD_PRELOAD") ||
		!strings.Contains(strings.Join(names, ","), "FOO") || len(ps.Containers[1].Env) != 0 {
		t.Errorf("kubectl strategic merge result: %s", out)
	}
}
