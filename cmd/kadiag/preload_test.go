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
		{"preload", "extract", "--dir", filepath.Join(dir, "missing")},
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
			} else if k := sr.Processes[0].Sockets[0].Keepalive; !k.Enabled || k.IdleS != 60 || k.IntervalS != 15 || k.Count != 4 || k.Source != "getsockopt" {
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
