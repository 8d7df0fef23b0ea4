package doctor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/internal/pod"
	"github.com/kadiag/kadiag/internal/testenv"
)

// The container id and pod UID in the exporter's cgroup fixtures.
const (
	fixtureID  = "4b1f8a2e8f0f6c7d2b3a1e9f0d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
	fixturePod = "6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e11"
)

// TestParseCgroup reads the cgroup files the exporter's tests collected from
// real runtimes (systemd and cgroupfs drivers, cgroup v1 and v2, containerd,
// CRI-O, Docker, Podman, kind, k3s, static pods, hosts) and checks every
// field against what the file says.
func TestParseCgroup(t *testing.T) {
	k8s := func(cgroup, runtime, id, pod string) Container {
		return Container{Cgroup: cgroup, InContainer: true, Runtime: runtime, ID: id, Kubernetes: true, PodUID: pod}
	}
	tests := map[string]Container{
		"containerd-systemd-v2.txt": k8s("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/cri-containerd-"+fixtureID+".scope",
			"containerd", fixtureID, fixturePod),
		"containerd-systemd-v2-guaranteed.txt": k8s("/kubepods.slice/kubepods-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/cri-containerd-"+fixtureID+".scope",
			"containerd", fixtureID, fixturePod),
		"containerd-cgroupns-v2.txt": k8s("/../../kubepods-besteffort-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/cri-containerd-"+fixtureID+".scope",
			"containerd", fixtureID, fixturePod),
		"kind-kubelet-slice-v2.txt": k8s("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/cri-containerd-"+fixtureID+".scope",
			"containerd", fixtureID, fixturePod),
		"crio-systemd-v2.txt": k8s("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/crio-"+fixtureID+".scope",
			"cri-o", fixtureID, fixturePod),
		// conmon watches the container from the pod's cgroup: not the container.
		"crio-conmon-v2.txt": k8s("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6e9d9f1c_3f52_4c4b_9a1e_0c2b7c6d3e11.slice/crio-conmon-"+fixtureID+".scope",
			"cri-o", "", fixturePod),
		"cgroupfs-v2-k3s.txt":       k8s("/kubepods/besteffort/pod"+fixturePod+"/"+fixtureID, "", fixtureID, fixturePod),
		"cgroupfs-v1-burstable.txt": k8s("/", "", fixtureID, fixturePod),
		"static-pod-v1.txt":         k8s("/kubepods/burstable/podd41e1dc5ce59d5d4ddd2a69e5ca5c0f2/"+fixtureID, "", fixtureID, "d41e1dc5ce59d5d4ddd2a69e5ca5c0f2"),
		"docker-systemd-v2.txt":     {Cgroup: "/system.slice/docker-" + fixtureID + ".scope", InContainer: true, Runtime: "docker", ID: fixtureID},
		"docker-cgroupfs-v1.txt":    {Cgroup: "/system.slice/containerd.service", InContainer: true, Runtime: "docker", ID: fixtureID},
		"podman-rootless-v2.txt": {Cgroup: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + fixtureID + ".scope/container",
			InContainer: true, Runtime: "podman", ID: fixtureID},
		"host-systemd-v2.txt":      {Cgroup: "/system.slice/sshd.service"},
		"host-this-machine-v1.txt": {Cgroup: "/"},
		"kubepods-slice-only.txt":  {Cgroup: "/kubepods.slice/kubepods-burstable.slice"},
	}
	files, _ := filepath.Glob("../internal/pod/testdata/cgroup/*.txt")
	if len(files) < len(tests) {
		t.Fatalf("found %d cgroup fixtures", len(files))
	}
	for _, f := range files {
		want, ok := tests[filepath.Base(f)]
		if !ok {
			continue
		}
		delete(tests, filepath.Base(f))
		b, _ := os.ReadFile(f)
		if c := ParseCgroup(string(b)); c != want {
			t.Errorf("%s:\n got %+v\nwant %+v", filepath.Base(f), c, want)
		}
	}
	for name := range tests {
		t.Errorf("fixture %s is missing", name)
	}
	pod := k8s("/kubepods/burstable/pod"+fixturePod+"/"+fixtureID, "", fixtureID, fixturePod)
	pod.ServiceHost = "198.18.0.1"
	for c, want := range map[*Container]string{
		&pod: "Kubernetes pod " + fixturePod + " (KUBERNETES_SERVICE_HOST=198.18.0.1), container 4b1f8a2e8f0f; cgroup " + pod.Cgroup,
		{Cgroup: "/system.slice/docker-x.scope", InContainer: true, Runtime: "docker", ID: fixtureID}: "docker container, container 4b1f8a2e8f0f; cgroup /system.slice/docker-x.scope",
		{Cgroup: "/", InContainer: true}: "container (own mount namespace); cgroup /",
		{Cgroup: "/user.slice/x.scope"}:  "host (no container detected); cgroup /user.slice/x.scope",
	} {
		if got := c.Describe(); got != want {
			t.Errorf("Describe %+v:\n got %q\nwant %q", *c, got, want)
		}
	}
}

// cgroup2Mount is where this machine mounts the cgroup v2 hierarchy, from
// /proc/self/mountinfo ("" when it has none).
func cgroup2Mount(t *testing.T) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if i := slices.Index(fields, "-"); i > 0 && i+1 < len(fields) && fields[i+1] == "cgroup2" {
			return fields[4]
		}
	}
	return ""
}

// TestDetectContainerSelf: the cgroup found for this test process is the
// one the kernel lists it in (its pid is in that cgroup's cgroup.procs), and
// a process sharing the test's mount namespace is no container unless its
// cgroup names one.
func TestDetectContainerSelf(t *testing.T) {
	c := detectContainer(os.Getpid(), nil)
	mnt := cgroup2Mount(t)
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy mounted: the path cannot be checked against the kernel")
	}
	procs, err := os.ReadFile(filepath.Join(mnt, c.Cgroup, "cgroup.procs"))
	if err != nil || !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(os.Getpid())) {
		t.Errorf("cgroup %q: pid %d not in %s/cgroup.procs (%v)", c.Cgroup, os.Getpid(), filepath.Join(mnt, c.Cgroup), err)
	}
	if want := c.ID != "" || c.Kubernetes; c.InContainer != want {
		t.Errorf("own process: in container %v, want %v (same mount namespace; cgroup %q)", c.InContainer, want, c.Cgroup)
	}
}

// TestDetectContainerPod: a real process moved into a cgroup laid out as
// the kubelet's is found in that pod and container, with that exact path.
func TestDetectContainerPod(t *testing.T) {
	testenv.Privileged(t)
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !testenv.MoveToFakePod(t, cmd.Process.Pid, fixturePod, fixtureID) {
		testenv.SkipOrFail(t, "no writable cgroup hierarchy to place a process in")
	}
	c := detectContainer(cmd.Process.Pid, nil)
	wantPath := fmt.Sprintf("/kubepods-kadiag-test-%d/burstable/pod%s/%s", os.Getpid(), fixturePod, fixtureID)
	if !strings.HasSuffix(c.Cgroup, wantPath) || c.ID != fixtureID || c.PodUID != fixturePod || !c.Kubernetes || !c.InContainer {
		t.Errorf("process in a fake pod: %+v, want cgroup ending %s, id %s, pod %s", c, wantPath, fixtureID, fixturePod)
	}
}

// A real process in a real cgroup named as kubelet names it, with a log
// root laid out as the kubelet lays out /var/log: doctor names the pod and
// the container.
func TestDetectContainerFakePod(t *testing.T) {
	testenv.Privileged(t)
	const (
		uid = "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706"
		id  = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"
	)
	root := testenv.KubeletLogs(t, "shop", "cart-5", uid, map[string]string{"cart": id})
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !testenv.MoveToFakePod(t, cmd.Process.Pid, uid, id) {
		testenv.SkipOrFail(t, "no writable cgroup hierarchy")
	}
	logs, err := pod.ReadLogs(root)
	if err != nil {
		t.Fatal(err)
	}
	c := detectContainer(cmd.Process.Pid, logs)
	if c.Namespace != "shop" || c.Pod != "cart-5" || c.Name != "cart" || c.PodUID != uid || c.ID != id || !c.Kubernetes {
		t.Fatalf("detectContainer = %+v", c)
	}
	if d := c.Describe(); !strings.Contains(d, "Kubernetes pod shop/cart-5/cart (uid "+uid+")") {
		t.Errorf("Describe = %q", d)
	}
	r, err := Diagnose(cmd.Process.Pid, Options{LogRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if r.Container.Pod != "cart-5" {
		t.Errorf("Diagnose container: %+v", r.Container)
	}
}
