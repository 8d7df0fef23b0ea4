package doctor

import (
	"os"
	"testing"
)

// Cgroup lines in the formats the container runtimes and the kubelet write
// (systemd and cgroupfs drivers, v1 and v2).
func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name, text      string
		runtime, podUID string
		k8s, container  bool
	}{
		{"host v2", "0::/user.slice/user-0.slice/session-3.scope\n", "", "", false, false},
		{"docker systemd v2", "0::/system.slice/docker-4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c.scope\n", "docker", "", false, true},
		{"docker cgroupfs v1", "12:memory:/docker/4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c\n1:name=systemd:/docker/4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c\n", "docker", "", false, true},
		{"containerd kubelet systemd v2", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d.scope\n",
			"containerd", "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d", true, true},
		{"cri-o cgroupfs v1", "11:pids:/kubepods/besteffort/pod0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/crio-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b\n",
			"cri-o", "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", true, true},
		{"cgroup namespace", "0::/\n", "", "", false, false},
	}
	for _, tt := range tests {
		c := ParseCgroup(tt.text)
		if c.Runtime != tt.runtime || c.PodUID != tt.podUID || c.Kubernetes != tt.k8s || c.InContainer != tt.container {
			t.Errorf("%s: %+v", tt.name, c)
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
