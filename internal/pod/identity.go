// Package pod maps a process to the Kubernetes pod and container it runs
// in, with the least privilege a node agent can have: the container id and
// pod UID come from the process's cgroup (every runtime, cgroup v1 and v2,
// the systemd and cgroupfs drivers, static pods), and the names from the
// log layout the kubelet writes on every node and log shippers read,
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/ and
// /var/log/containers/<pod>_<namespace>_<container>-<container id>.log.
// No API server and no runtime socket is needed.
package pod

// Identity is where a process runs. All fields are empty for a process
// outside any pod; names are empty where the log layout does not name the
// pod (a node without /var/log mounted) or the container (the pod's pause
// sandbox, whose id has no log file).
type Identity struct {
	Namespace   string `json:"namespace"`    // the pod's namespace
	Pod         string `json:"pod"`          // the pod's name
	Container   string `json:"container"`    // the container's name in the pod spec
	PodUID      string `json:"pod_uid"`      // metadata.uid
	ContainerID string `json:"container_id"` // the runtime's id, 64 hex digits
}

// InPod reports whether the process runs in a Kubernetes pod.
func (i Identity) InPod() bool { return i.PodUID != "" }

// String names the place as people write it: "namespace/pod/container",
// "namespace/pod" for a process outside any named container, the pod UID
// when the names are not known, and "" outside any pod.
func (i Identity) String() string {
	switch {
	case i.Pod == "" && i.PodUID != "":
		return "pod " + i.PodUID
	case i.Pod == "":
		return ""
	case i.Container == "":
		return i.Namespace + "/" + i.Pod
	}
	return i.Namespace + "/" + i.Pod + "/" + i.Container
}
