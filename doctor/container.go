package doctor

import (
	"bytes"
	"fmt"
	"os"

	"github.com/kadiag/kadiag/internal/label"
	"github.com/kadiag/kadiag/internal/pod"
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
	// Namespace, Pod and Name are the pod's namespace and name and the
	// container's name, from the kubelet's log layout (--log-root).
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Name      string `json:"name,omitempty"`
	// ServiceHost is KUBERNETES_SERVICE_HOST from the process's environment.
	ServiceHost string `json:"kubernetes_service_host,omitempty"`
}

func detectContainer(pid int, logs *pod.Logs) Container {
	proc := fmt.Sprintf("/proc/%d", pid)
	var c Container
	if b, err := os.ReadFile(proc + "/cgroup"); err == nil {
		c = ParseCgroup(string(b))
		id := logs.Identify(pod.ParseCgroup(b))
		c.Namespace, c.Pod, c.Name = id.Namespace, id.Pod, id.Container
	}
	if env, err := os.ReadFile(proc + "/environ"); err == nil {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("KUBERNETES_SERVICE_HOST=")); ok {
				c.ServiceHost = label.Clean(string(v))
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
// path names, and the container id and pod UID (internal/pod's parser,
// which knows the kubelet's, containerd's, CRI-O's, Docker's and Podman's
// layouts).
func ParseCgroup(text string) Container {
	found := pod.ParseCgroup([]byte(text))
	c := Container{Cgroup: label.Clean(found.Path), Runtime: found.Runtime, ID: found.ContainerID, PodUID: found.PodUID}
	c.Kubernetes = c.PodUID != ""
	c.InContainer = c.ID != "" || c.Kubernetes
	return c
}

// Describe names the place for people.
func (c Container) Describe() string {
	var s string
	switch {
	case c.Kubernetes:
		s = "Kubernetes pod"
		switch {
		case c.Pod != "" && c.Name != "":
			s += " " + c.Namespace + "/" + c.Pod + "/" + c.Name + " (uid " + c.PodUID + ")"
		case c.Pod != "":
			s += " " + c.Namespace + "/" + c.Pod + " (uid " + c.PodUID + ")"
		case c.PodUID != "":
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
