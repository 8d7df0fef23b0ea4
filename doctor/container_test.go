package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	files, _ := filepath.Glob("../exporter/testdata/cgroup/*.txt")
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

// TestDetectContainerSelf: this test process is on the host or in a
// container, and either way its own cgroup file parses to a path.
func TestDetectContainerSelf(t *testing.T) {
	c := detectContainer(os.Getpid())
	if c.Cgroup == "" || c.Describe() == "" {
		t.Errorf("own cgroup: %+v", c)
	}
}
