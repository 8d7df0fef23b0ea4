package pod

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Errors of Select and ParseSelector, wrapped with what they concern; test
// them with errors.Is.
var (
	// ErrBadSelector means --pod is not NAMESPACE/NAME.
	ErrBadSelector = errors.New("give the pod as NAMESPACE/NAME")
	// ErrPodNotFound means the node's log layout has no such pod: it runs
	// on another node, does not exist, or the log root is not mounted.
	ErrPodNotFound = errors.New("pod not found on this node")
	// ErrContainerNotFound means the pod has no container of that name.
	ErrContainerNotFound = errors.New("no such container in the pod")
	// ErrNoProcess means the pod (or container) runs no process now.
	ErrNoProcess = errors.New("no running process")
)

// Selector names a pod and, optionally, one of its containers.
type Selector struct {
	Namespace, Pod, Container string
}

// ParseSelector reads --pod NAMESPACE/NAME and --container NAME.
func ParseSelector(pod, container string) (Selector, error) {
	ns, name, ok := strings.Cut(pod, "/")
	if !ok || ns == "" || name == "" || strings.ContainsAny(name, "/_") || strings.Contains(ns, "_") {
		return Selector{}, fmt.Errorf("--pod %q: %w (e.g. --pod payments/api-7f9c)", pod, ErrBadSelector)
	}
	return Selector{Namespace: ns, Pod: name, Container: container}, nil
}

func (s Selector) String() string {
	if s.Container != "" {
		return s.Namespace + "/" + s.Pod + " container " + s.Container
	}
	return s.Namespace + "/" + s.Pod
}

// Select returns the processes of the selected pod (or container) on this
// node, by ascending pid, each with its identity.
func Select(l *Logs, s Selector) ([]int, []Identity, error) {
	uids := l.PodUIDs(s.Namespace, s.Pod)
	if len(uids) == 0 {
		return nil, nil, fmt.Errorf("%w: %s/%s has no logs under %s/pods (it runs on another node or not at all, or the node's /var/log is not mounted: --log-root)",
			ErrPodNotFound, s.Namespace, s.Pod, l.Root)
	}
	if s.Container != "" {
		var known []string
		for _, uid := range uids {
			known = append(known, l.Containers(uid)...)
		}
		slices.Sort(known)
		known = slices.Compact(known)
		if !slices.Contains(known, s.Container) {
			return nil, nil, fmt.Errorf("%w: %s/%s has no container %q (it has: %s)", ErrContainerNotFound,
				s.Namespace, s.Pod, s.Container, strings.Join(known, ", "))
		}
	}
	pids, err := allPIDs()
	if err != nil {
		return nil, nil, err
	}
	var outPIDs []int
	var outIDs []Identity
	for _, pid := range pids {
		c, err := ReadCgroup(pid)
		if err != nil || !slices.Contains(uids, c.PodUID) {
			continue
		}
		id := l.Identify(c)
		if s.Container != "" && id.Container != s.Container {
			continue
		}
		if id.Container == "" && len(l.Containers(c.PodUID)) > 0 {
			// The pod's sandbox (pause) and runtime helpers (conmon) hold
			// no application sockets and are in no named container.
			continue
		}
		outPIDs = append(outPIDs, pid)
		outIDs = append(outIDs, id)
	}
	if len(outPIDs) == 0 {
		return nil, nil, fmt.Errorf("%w in %s on this node (pod UID %s)", ErrNoProcess, s, strings.Join(uids, ", "))
	}
	return outPIDs, outIDs, nil
}

// allPIDs lists /proc, ascending.
func allPIDs() ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// Main picks the process to examine among a container's processes: the
// one whose parent is outside the set (the container's first process, or
// the oldest such), the lowest pid when parents cannot be read.
func Main(pids []int) int {
	if len(pids) == 0 {
		return 0
	}
	for _, pid := range pids {
		if pp, err := ppid(pid); err == nil && !slices.Contains(pids, pp) {
			return pid
		}
	}
	return pids[0]
}

// errMalformedStat never reaches users: Main falls back to the lowest pid.
var errMalformedStat = errors.New("malformed /proc/PID/stat")

func ppid(pid int) (int, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errMalformedStat
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, errMalformedStat
	}
	return strconv.Atoi(f[1])
}
