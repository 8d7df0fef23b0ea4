package exporter

import (
	"os"
	"path/filepath"
	"testing"
)

// The fixtures are /proc/PID/cgroup files in the layouts of the kubelet
// cgroup drivers and the container runtimes, as a host and as a
// containerised reader (private cgroup namespace) see them.
func TestParseCgroup(t *testing.T) {
	const (
		id     = "4b1f8a2e8f0f6c7d2b3a1e9f0d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
		pod    = "6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e11"
		static = "d41e1dc5ce59d5d4ddd2a69e5ca5c0f2"
	)
	tests := []struct {
		file string
		want Container
	}{
		{"containerd-systemd-v2.txt", Container{ID: id, PodUID: pod}},
		{"containerd-systemd-v2-guaranteed.txt", Container{ID: id, PodUID: pod}},
		{"containerd-cgroupns-v2.txt", Container{ID: id, PodUID: pod}},
		{"kind-kubelet-slice-v2.txt", Container{ID: id, PodUID: pod}},
		{"crio-systemd-v2.txt", Container{ID: id, PodUID: pod}},
		{"crio-conmon-v2.txt", Container{PodUID: pod}},
		{"cgroupfs-v1-burstable.txt", Container{ID: id, PodUID: pod}},
		{"cgroupfs-v2-k3s.txt", Container{ID: id, PodUID: pod}},
		{"static-pod-v1.txt", Container{ID: id, PodUID: static}},
		{"docker-systemd-v2.txt", Container{ID: id}},
		{"docker-cgroupfs-v1.txt", Container{ID: id}},
		{"podman-rootless-v2.txt", Container{ID: id}},
		{"host-systemd-v2.txt", Container{}},
		{"host-this-machine-v1.txt", Container{}},
		{"kubepods-slice-only.txt", Container{}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		b, err := os.ReadFile(filepath.Join("testdata/cgroup", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := ParseCgroup(b); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.file, got, tt.want)
		}
	}
	all, _ := filepath.Glob("testdata/cgroup/*.txt")
	for _, f := range all {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no expectation", f)
		}
	}
}

func TestParseCgroupRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"garbage",
		"0::/kubepods/burstable/podnot-a-uid/abc",
		"0::/system.slice/docker-" + "ABCDEF" + ".scope",
		"0::/kubepods/burstable/pod6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e1/x",   // 35 chars
		"0::/user.slice/user-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice", // not kubepods
	} {
		if got := ParseCgroup([]byte(in)); got != (Container{}) {
			t.Errorf("ParseCgroup(%q) = %+v, want nothing", in, got)
		}
	}
}

// A real process moved into a cgroup v1 hierarchy shaped like kubelet's
// cgroupfs driver is labelled with that container and pod.
func TestReadContainerRealCgroup(t *testing.T) {
	const (
		id  = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
		pod = "0f1d2c3b-4a59-6877-8695-a4b3c2d1e0f9"
	)
	pid, cleanup := inFakePod(t, pod, id)
	defer cleanup()
	if got := readContainer(pid); got != (Container{ID: id, PodUID: pod}) {
		b, _ := os.ReadFile(filepath.Join(procRoot, itoa(pid), "cgroup"))
		t.Fatalf("readContainer = %+v from\n%s", got, b)
	}
	if got := readContainer(os.Getpid()); got.PodUID == pod {
		t.Fatalf("the test process itself is labelled %+v", got)
	}
}
