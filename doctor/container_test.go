package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/internal/testenv"
)

// TestParseCgroup reads the cgroup files the exporter's tests collected from
// real runtimes (systemd and cgroupfs drivers, cgroup v1 and v2, containerd,
// CRI-O, Docker, Podman, kind, k3s, static pods, hosts).
func TestParseCgroup(t *testing.T) {
	tests := map[string]struct {
		runtime        string
		k8s, container bool
	}{
		"containerd-systemd-v2.txt":            {"containerd", true, true},
		"containerd-systemd-v2-guaranteed.txt": {"containerd", true, true},
		"containerd-cgroupns-v2.txt":           {"containerd", true, true},
		"kind-kubelet-slice-v2.txt":            {"containerd", true, true},
		"crio-systemd-v2.txt":                  {"cri-o", true, true},
		"crio-conmon-v2.txt":                   {"cri-o", true, true},
		"static-pod-v1.txt":                    {"", true, true},
		"docker-systemd-v2.txt":                {"docker", false, true},
		"docker-cgroupfs-v1.txt":               {"docker", false, true},
		"podman-rootless-v2.txt":               {"podman", false, true},
		"host-systemd-v2.txt":                  {"", false, false},
		"host-this-machine-v1.txt":             {"", false, false},
		"kubepods-slice-only.txt":              {"", false, false},
	}
	files, _ := filepath.Glob("../internal/pod/testdata/cgroup/*.txt")
	if len(files) < len(tests) {
		t.Fatalf("found %d cgroup fixtures", len(files))
	}
	for _, f := range files {
		want, ok := tests[filepath.Base(f)]
		if !ok {
			continue
		}
		b, _ := os.ReadFile(f)
		c := ParseCgroup(string(b))
		if (want.runtime != "" && c.Runtime != want.runtime) || c.Kubernetes != want.k8s || c.InContainer != want.container || c.Cgroup == "" {
			t.Errorf("%s: %+v, want %+v", filepath.Base(f), c, want)
		}
		if c.Kubernetes && (c.PodUID == "" || !strings.Contains(c.Describe(), "Kubernetes pod "+c.PodUID)) {
			t.Errorf("%s: %s", filepath.Base(f), c.Describe())
		}
	}
}

// A real process in a real cgroup named as kubelet names it, with a log
// root laid out as the kubelet lays out /var/log: doctor names the pod and
// the container.
func TestDetectContainerFakePod(t *testing.T) {
	testenv.Privileged(t)
	const (
		uid = "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706"
		id  = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"
	)
	root := t.TempDir()
	dir := filepath.Join(root, "pods", "shop_cart-5_"+uid, "cart")
	os.MkdirAll(dir, 0o755)
	os.MkdirAll(filepath.Join(root, "containers"), 0o755)
	os.WriteFile(filepath.Join(dir, "0.log"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "0.log"), filepath.Join(root, "containers", "cart-5_shop_cart-"+id+".log"))
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !testenv.MoveToFakePod(t, cmd.Process.Pid, uid, id) {
		testenv.SkipOrFail(t, "no writable cgroup hierarchy")
	}
	logs, err := pod.ReadLogs(root)
	if err != nil {
		t.Fatal(err)
	}
	c := detectContainer(cmd.Process.Pid, logs)
	if c.Namespace != "shop" || c.Pod != "cart-5" || c.Name != "cart" || c.PodUID != uid || c.ID != id || !c.Kubernetes {
		t.Fatalf("detectContainer = %+v", c)
	}
	if d := c.Describe(); !strings.Contains(d, "Kubernetes pod shop/cart-5/cart (uid "+uid+")") {
		t.Errorf("Describe = %q", d)
	}
	r, err := Diagnose(cmd.Process.Pid, Options{LogRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if r.Container.Pod != "cart-5" {
		t.Errorf("Diagnose container: %+v", r.Container)
	}
}

// TestDetectContainerSelf: the test process's own cgroup reads as the
// path its cgroup file's v2 line (else first line) holds, and the test
// process, in no pod, is not called one.
func TestDetectContainerSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := strings.SplitN(lines[0], ":", 3)[2]
	for _, l := range lines {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			want = p
		}
	}
	c := detectContainer(os.Getpid(), nil)
	if c.Cgroup != want || c.Kubernetes || c.PodUID != "" || c.Pod != "" {
		t.Errorf("own cgroup: %+v, want path %q outside any pod", c, want)
	}
}
