package exporter

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Container identifies the container and Kubernetes pod a process runs in,
// as its cgroup path shows them. Empty fields mean the path does not say
// (a host process, or a runtime whose layout is not recognised).
type Container struct {
	// ID is the runtime's container id (64 hex digits), without the
	// "containerd://" prefix Kubernetes shows in a pod's status.
	ID string
	// PodUID is the pod's metadata.uid, with dashes.
	PodUID string
}

// readContainer reads /proc/PID/cgroup.
func readContainer(pid int) Container {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return Container{}
	}
	return ParseCgroup(b)
}

// ParseCgroup finds the container id and pod uid in the contents of a
// /proc/PID/cgroup file. It knows the layouts of the systemd and cgroupfs
// cgroup drivers of kubelet (kubepods.slice/…-pod<uid>.slice and
// kubepods/<qos>/pod<uid>), and the scopes of containerd (cri-containerd-),
// CRI-O (crio-), Docker (docker-, /docker/<id>) and Podman (libpod-). Paths
// may be relative to a cgroup namespace ("/../../kubepods-…"), as a
// containerised reader sees them. Of several lines (cgroup v1 controllers)
// the one that tells the most wins.
func ParseCgroup(b []byte) Container {
	var best Container
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// hierarchy-ID:controllers:path; the path may itself hold colons.
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		c := parseCgroupPath(path)
		if score(c) > score(best) {
			best = c
		}
		if best.ID != "" && best.PodUID != "" {
			break
		}
	}
	return best
}

func score(c Container) int {
	n := 0
	if c.ID != "" {
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

func parseCgroupPath(path string) Container {
	var c Container
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == ".." {
			continue
		}
		if uid, ok := podUID(seg); ok {
			c.PodUID = uid
			continue
		}
		if id, ok := containerID(seg); ok {
			c.ID = id
		}
	}
	return c
}

// containerID recognises "<runtime>-<id>.scope" and a bare id (cgroupfs).
func containerID(seg string) (string, bool) {
	if isHex(seg, 64) {
		return seg, true
	}
	base, ok := strings.CutSuffix(seg, ".scope")
	if !ok || strings.HasPrefix(base, "crio-conmon-") {
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
