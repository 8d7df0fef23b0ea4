package pod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultLogRoot is where the kubelet writes pods' logs on a node; a
// DaemonSet mounts it from the host (hostPath, read-only) and names the
// mount with --log-root or KADIAG_LOG_ROOT.
const DefaultLogRoot = "/var/log"

// EnvLogRoot names the environment variable that sets the log root when
// no flag does.
const EnvLogRoot = "KADIAG_LOG_ROOT"

// LogRoot returns flag when set, else $KADIAG_LOG_ROOT, else /var/log.
func LogRoot(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv(EnvLogRoot); v != "" {
		return v
	}
	return DefaultLogRoot
}

// Logs is the kubelet's log layout as read once from a log root.
type Logs struct {
	// Root is the directory read (the node's /var/log).
	Root string
	pods map[string]podName // by pod UID
	// podContainers lists, by pod UID, the containers that have logs.
	podContainers map[string][]string
	// containers maps a container id to its pod and its name in the pod spec.
	containers map[string]containerName
}

type podName struct{ namespace, name string }

type containerName struct {
	pod  podName
	name string
}

// ReadLogs reads the pod and container names under root. A root without
// pods/ or containers/ (not a Kubernetes node, or the directory not
// mounted) gives an empty layout, not an error: processes are then known
// by pod UID and container id only. Entries that do not follow the
// layout are ignored.
func ReadLogs(root string) (*Logs, error) {
	l := &Logs{Root: root, pods: map[string]podName{}, podContainers: map[string][]string{}, containers: map[string]containerName{}}
	pods, err := os.ReadDir(filepath.Join(root, "pods"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, d := range pods {
		if ns, name, uid, ok := parsePodDir(d.Name()); ok {
			l.pods[uid] = podName{ns, name}
			sub, _ := os.ReadDir(filepath.Join(root, "pods", d.Name()))
			for _, c := range sub {
				if c.IsDir() {
					l.podContainers[uid] = append(l.podContainers[uid], c.Name())
				}
			}
		}
	}
	ctrs, err := os.ReadDir(filepath.Join(root, "containers"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, d := range ctrs {
		if pod, ns, ctr, id, ok := parseContainerLog(d.Name()); ok {
			l.containers[id] = containerName{podName{ns, pod}, ctr}
		}
	}
	return l, nil
}

// parsePodDir splits "<namespace>_<pod>_<uid>". Namespaces and pod names
// are DNS names, which hold no underscore.
func parsePodDir(s string) (ns, name, uid string, ok bool) {
	parts := strings.Split(s, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", false
	}
	if !isUUID(parts[2]) && !isHex(parts[2], 32) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// parseContainerLog splits "<pod>_<namespace>_<container>-<id>.log".
func parseContainerLog(s string) (pod, ns, ctr, id string, ok bool) {
	base, ok := strings.CutSuffix(s, ".log")
	if !ok {
		return "", "", "", "", false
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", "", false
	}
	i := strings.LastIndexByte(parts[2], '-')
	if i <= 0 || !isHex(parts[2][i+1:], 64) {
		return "", "", "", "", false
	}
	return parts[0], parts[1], parts[2][:i], parts[2][i+1:], true
}

// Identify names the pod and container of a cgroup.
func (l *Logs) Identify(c Cgroup) Identity {
	id := Identity{PodUID: c.PodUID, ContainerID: c.ContainerID}
	if c.PodUID == "" {
		// A container outside Kubernetes (Docker, Podman) has no pod.
		return id
	}
	if l == nil {
		return id
	}
	p, ok := l.pods[c.PodUID]
	if !ok {
		return id
	}
	id.Namespace, id.Pod = p.namespace, p.name
	// A container's name counts only when its log names the same pod.
	if ctr, ok := l.containers[c.ContainerID]; ok && ctr.pod == p {
		id.Container = ctr.name
	}
	return id
}

// PodUIDs returns the UIDs the layout knows for namespace/name: usually
// one, more while the kubelet has not yet removed the logs of an earlier
// pod of the same name (a StatefulSet's replacement).
func (l *Logs) PodUIDs(namespace, name string) []string {
	var out []string
	for uid, p := range l.pods {
		if p.namespace == namespace && p.name == name {
			out = append(out, uid)
		}
	}
	return out
}

// Containers returns the names of the pod's containers that have logs
// (init containers included), sorted.
func (l *Logs) Containers(uid string) []string { return l.podContainers[uid] }
