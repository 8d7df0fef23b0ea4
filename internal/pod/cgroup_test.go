package pod

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

// The fixtures are /proc/PID/cgroup files in the layouts of the kubelet
// cgroup drivers (systemd, cgroupfs), cgroup v1 and v2, and the container
// runtimes (containerd, CRI-O, Docker, Podman), as a host and as a
// containerised reader (private cgroup namespace) see them.
func TestParseCgroup(t *testing.T) {
	const (
		id     = "4b1f8a2e8f0f6c7d2b3a1e9f0d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
		uid    = "6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e11"
		static = "d41e1dc5ce59d5d4ddd2a69e5ca5c0f2"
	)
	tests := []struct {
		file string
		want Cgroup // Path is checked apart: non-empty
	}{
		{"containerd-systemd-v2.txt", Cgroup{Runtime: "containerd", ContainerID: id, PodUID: uid}},
		{"containerd-systemd-v2-guaranteed.txt", Cgroup{Runtime: "containerd", ContainerID: id, PodUID: uid}},
		{"containerd-cgroupns-v2.txt", Cgroup{Runtime: "containerd", ContainerID: id, PodUID: uid}},
		{"containerd-cgroupfs-v2-guaranteed.txt", Cgroup{ContainerID: id, PodUID: uid}},
		{"kind-kubelet-slice-v2.txt", Cgroup{Runtime: "containerd", ContainerID: id, PodUID: uid}},
		{"crio-systemd-v2.txt", Cgroup{Runtime: "cri-o", ContainerID: id, PodUID: uid}},
		{"crio-cgroupfs-v1.txt", Cgroup{Runtime: "cri-o", ContainerID: id, PodUID: uid}},
		{"crio-conmon-v2.txt", Cgroup{Runtime: "cri-o", PodUID: uid}},
		{"cgroupfs-v1-burstable.txt", Cgroup{ContainerID: id, PodUID: uid}},
		{"cgroupfs-v2-k3s.txt", Cgroup{ContainerID: id, PodUID: uid}},
		{"static-pod-v1.txt", Cgroup{ContainerID: id, PodUID: static}},
		{"docker-systemd-v2.txt", Cgroup{Runtime: "docker", ContainerID: id}},
		{"docker-cgroupfs-v1.txt", Cgroup{Runtime: "docker", ContainerID: id}},
		{"podman-rootless-v2.txt", Cgroup{Runtime: "podman", ContainerID: id}},
		{"host-systemd-v2.txt", Cgroup{}},
		{"host-this-machine-v1.txt", Cgroup{}},
		{"kubepods-slice-only.txt", Cgroup{}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		b, err := os.ReadFile(filepath.Join("testdata/cgroup", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got := ParseCgroup(b)
		if got.Path == "" {
			t.Errorf("%s: no path", tt.file)
		}
		got.Path = ""
		if got != tt.want {
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

// The v2 line names the path, else the first v1 line.
func TestParseCgroupPath(t *testing.T) {
	for in, want := range map[string]string{
		"12:pids:/a\n0::/b\n":       "/b",
		"12:pids:/a\n4:memory:/c\n": "/a",
		"0::/x:y\n":                 "/x:y",
	} {
		if got := ParseCgroup([]byte(in)).Path; got != want {
			t.Errorf("ParseCgroup(%q).Path = %q, want %q", in, got, want)
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
		got := ParseCgroup([]byte(in))
		if got.ContainerID != "" || got.PodUID != "" || got.Runtime != "" {
			t.Errorf("ParseCgroup(%q) = %+v, want nothing", in, got)
		}
	}
}

// A real process moved into a real cgroup shaped like kubelet's cgroupfs
// driver reads back as that container and pod.
func TestReadCgroupRealProcess(t *testing.T) {
	testenv.Privileged(t)
	const (
		id  = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
		uid = "0f1d2c3b-4a59-6877-8695-a4b3c2d1e0f9"
	)
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !testenv.MoveToFakePod(t, cmd.Process.Pid, uid, id) {
		testenv.SkipOrFail(t, "no writable cgroup hierarchy to place a process in")
	}
	got, err := ReadCgroup(cmd.Process.Pid)
	if err != nil || got.ContainerID != id || got.PodUID != uid {
		t.Fatalf("ReadCgroup = %+v, %v", got, err)
	}
	if self, _ := ReadCgroup(os.Getpid()); self.PodUID == uid {
		t.Fatalf("the test process itself reads as %+v", self)
	}
	if _, err := ReadCgroup(1 << 30); err == nil {
		t.Fatal("a missing process has a cgroup")
	}
}
