package doctor

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/kadiag/kadiag/exporter"
)

// Container says where the process runs: its cgroup, the container runtime
// and id when the cgroup names them, and whether it is a Kubernetes pod.
type Container struct {
	// Cgroup is the process's cgroup path (the v2 line, else the first v1 one).
	Cgroup string `json:"cgroup"`
	// InContainer: the cgroup names a container, or the process has its own
	// mount namespace.
	InContainer bool   `json:"in_container"`
	Runtime     string `json:"runtime,omitempty"` // docker, containerd, cri-o, podman
	ID          string `json:"id,omitempty"`
	Kubernetes  bool   `json:"kubernetes"`
	PodUID      string `json:"pod_uid,omitempty"`
	// ServiceHost is KUBERNETES_SERVICE_HOST from the process's environment.
	ServiceHost string `json:"kubernetes_service_host,omitempty"`
}

func detectContainer(pid int) Container {
	proc := fmt.Sprintf("/proc/%d", pid)
	var c Container
	if b, err := os.ReadFile(proc + "/cgroup"); err == nil {
		c = ParseCgroup(string(b))
	}
	if env, err := os.ReadFile(proc + "/environ"); err == nil {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("KUBERNETES_SERVICE_HOST=")); ok {
				c.ServiceHost = string(v)
				c.Kubernetes = true
			}
		}
	}
	if !c.InContainer {
		mine, err1 := os.Readlink("/proc/self/ns/mnt")
		theirs, err2 := os.Readlink(proc + "/ns/mnt")
		c.InContainer = err1 == nil && err2 == nil && mine != theirs
	}
	if c.Kubernetes {
		c.InContainer = true
	}
	return c
}

// ParseCgroup reads /proc/PID/cgroup: the path, the container runtime the
// path names, and the container id and pod UID as the exporter's parser
// (which knows the kubelet's, containerd's, CRI-O's, Docker's and Podman's
// layouts) finds them.
func ParseCgroup(text string) Container {
	var c Container
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" || c.Cgroup == "" {
			c.Cgroup = parts[2]
		}
	}
	found := exporter.ParseCgroup([]byte(text))
	c.ID, c.PodUID = found.ID, found.PodUID
	p := text
	switch {
	case strings.Contains(p, "cri-containerd"):
		c.Runtime = "containerd"
	case strings.Contains(p, "crio-"):
		c.Runtime = "cri-o"
	case strings.Contains(p, "libpod-"):
		c.Runtime = "podman"
	case strings.Contains(p, "docker"):
		c.Runtime = "docker"
	}
	c.Kubernetes = c.PodUID != ""
	c.InContainer = c.ID != "" || c.Kubernetes
	if !c.InContainer {
		c.Runtime = ""
	}
	return c
}

// Describe names the place for people.
func (c Container) Describe() string {
	var s string
	switch {
	case c.Kubernetes:
		s = "Kubernetes pod"
		if c.PodUID != "" {
			s += " " + c.PodUID
		}
		if c.ServiceHost != "" {
			s += " (KUBERNETES_SERVICE_HOST=" + c.ServiceHost + ")"
		}
	case c.InContainer && c.Runtime != "":
		s = c.Runtime + " container"
	case c.InContainer:
		s = "container (own mount namespace)"
	default:
		s = "host (no container detected)"
	}
	if c.ID != "" {
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		s += ", container " + id
	}
	return s + "; cgroup " + c.Cgroup
}
