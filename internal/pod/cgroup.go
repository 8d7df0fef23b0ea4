package pod

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Cgroup is what a process's /proc/PID/cgroup says about where it runs.
// Empty fields mean the file does not say (a host process, or a runtime
// whose layout is not recognised).
type Cgroup struct {
	// Path is the process's cgroup: the v2 line, else the first v1 one.
	Path string
	// Runtime is the container runtime the path names: containerd, cri-o,
	// docker or podman.
	Runtime string
	// ContainerID is the runtime's container id (64 hex digits), without
	// the "containerd://" prefix Kubernetes shows in a pod's status.
	ContainerID string
	// PodUID is the pod's metadata.uid, with dashes (32 hex digits for a
	// static pod: the kubelet's hash of its manifest).
	PodUID string
}

// ReadCgroup reads /proc/PID/cgroup.
func ReadCgroup(pid int) (Cgroup, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return Cgroup{}, err
	}
	return ParseCgroup(b), nil
}

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// ParseCgroup finds the container id and pod uid in the contents of a
// /proc/PID/cgroup file. It knows the layouts of the systemd and cgroupfs
// cgroup drivers of kubelet (kubepods.slice/…-pod<uid>.slice and
// kubepods/<qos>/pod<uid>), and the scopes of containerd (cri-containerd-),
// CRI-O (crio-), Docker (docker-, /docker/<id>) and Podman (libpod-). Paths
// may be relative to a cgroup namespace ("/../../kubepods-…"), as a
// containerised reader sees them. Of several lines (cgroup v1 controllers)
// the one that tells the most wins.
func ParseCgroup(b []byte) Cgroup {
	var best, c Cgroup
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// hierarchy-ID:controllers:path; the path may itself hold colons.
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" || best.Path == "" {
			best.Path = path
		}
		c = parseCgroupPath(path)
		if score(c) > score(best) {
			best.ContainerID, best.PodUID = c.ContainerID, c.PodUID
		}
	}
	if best.ContainerID != "" || best.PodUID != "" {
		best.Runtime = runtimeOf(string(b))
	}
	return best
}

// runtimeOf names the runtime from the words its cgroups carry.
func runtimeOf(text string) string {
	switch {
	case strings.Contains(text, "cri-containerd"):
		return "containerd"
	case strings.Contains(text, "crio-"):
		return "cri-o"
	case strings.Contains(text, "libpod-"):
		return "podman"
	case strings.Contains(text, "docker"):
		return "docker"
	}
	return ""
}

func score(c Cgroup) int {
	n := 0
	if c.ContainerID != "" {
		n++
	}
	if c.PodUID != "" {
		n++
	}
	return n
}

// containerPrefixes are the systemd scope names runtimes give containers.
// crio-conmon- is CRI-O's monitor process, which belongs to no container.
var containerPrefixes = []string{"cri-containerd-", "crio-", "docker-", "libpod-"}

func parseCgroupPath(path string) Cgroup {
	var c Cgroup
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == ".." {
			continue
		}
		if uid, ok := podUID(seg); ok {
			c.PodUID = uid
			continue
		}
		if id, ok := containerID(seg); ok {
			c.ContainerID = id
		}
	}
	return c
}

// containerID recognises "<runtime>-<id>.scope" (systemd driver),
// "<runtime>-<id>" (CRI-O under the cgroupfs driver) and a bare id
// (containerd and Docker under cgroupfs).
func containerID(seg string) (string, bool) {
	if isHex(seg, 64) {
		return seg, true
	}
	base := strings.TrimSuffix(seg, ".scope")
	if strings.HasPrefix(base, "crio-conmon-") {
		return "", false
	}
	for _, p := range containerPrefixes {
		if id, ok := strings.CutPrefix(base, p); ok && isHex(id, 64) {
			return id, true
		}
	}
	return "", false
}

// podUID recognises "pod<uid>" (cgroupfs) and "…-pod<uid>.slice" (systemd,
// where the uid's dashes become underscores). Static pods have a 32-digit
// hex uid without dashes.
func podUID(seg string) (string, bool) {
	if s, ok := strings.CutSuffix(seg, ".slice"); ok {
		i := strings.LastIndex(s, "-pod")
		if i < 0 || !strings.Contains(s[:i], "kubepods") {
			return "", false
		}
		seg = s[i+1:]
	}
	uid, ok := strings.CutPrefix(seg, "pod")
	if !ok {
		return "", false
	}
	uid = strings.ReplaceAll(uid, "_", "-")
	if isUUID(uid) || isHex(uid, 32) {
		return uid, true
	}
	return "", false
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i:i+1], 1) {
				return false
			}
		}
	}
	return true
}
