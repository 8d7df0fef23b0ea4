package pod

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kadiag/kadiag/internal/testenv"
)

const (
	fixID  = "4b1f8a2e8f0f6c7d2b3a1e9f0d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
	fixUID = "6e9d9f1c-3f52-4c4b-9a1e-0c2b7c6d3e11"
)

// The recorded layout (testdata/varlog, as the kubelet lays out a node's
// /var/log) joined with the recorded cgroup files names pod and container.
func TestIdentify(t *testing.T) {
	l, err := ReadLogs("testdata/varlog")
	if err != nil {
		t.Fatal(err)
	}
	api := Identity{Namespace: "payments", Pod: "api-7f9c6d5b4-x2x9q", Container: "api", PodUID: fixUID, ContainerID: fixID}
	tests := []struct {
		cgroup string
		want   Identity
		str    string
	}{
		{"containerd-systemd-v2.txt", api, "payments/api-7f9c6d5b4-x2x9q/api"},
		{"containerd-cgroupns-v2.txt", api, "payments/api-7f9c6d5b4-x2x9q/api"},
		{"crio-systemd-v2.txt", api, "payments/api-7f9c6d5b4-x2x9q/api"},
		{"crio-cgroupfs-v1.txt", api, "payments/api-7f9c6d5b4-x2x9q/api"},
		{"cgroupfs-v1-burstable.txt", api, "payments/api-7f9c6d5b4-x2x9q/api"},
		// conmon is in the pod but in no container.
		{"crio-conmon-v2.txt", Identity{Namespace: "payments", Pod: "api-7f9c6d5b4-x2x9q", PodUID: fixUID}, "payments/api-7f9c6d5b4-x2x9q"},
		// A static pod: its UID is the kubelet's hash of the manifest, the
		// same in the cgroup and the log directory; its container id is
		// not the fixture's etcd one, so the container is not named.
		{"static-pod-v1.txt", Identity{Namespace: "kube-system", Pod: "etcd-node-1", PodUID: "d41e1dc5ce59d5d4ddd2a69e5ca5c0f2", ContainerID: fixID}, "kube-system/etcd-node-1"},
		{"docker-systemd-v2.txt", Identity{ContainerID: fixID}, ""},
		{"host-systemd-v2.txt", Identity{}, ""},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join("testdata/cgroup", tt.cgroup))
		if err != nil {
			t.Fatal(err)
		}
		got := l.Identify(ParseCgroup(b))
		if got != tt.want || got.String() != tt.str {
			t.Errorf("%s: %+v %q, want %+v %q", tt.cgroup, got, got.String(), tt.want, tt.str)
		}
	}
	// Without the layout (the log root not mounted) only the ids are known.
	empty, err := ReadLogs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("testdata/cgroup/containerd-systemd-v2.txt")
	if got := empty.Identify(ParseCgroup(b)); got != (Identity{PodUID: fixUID, ContainerID: fixID}) || got.String() != "pod "+fixUID {
		t.Errorf("without the layout: %+v %q", got, got.String())
	}
	if got := l.PodUIDs("db", "pg-0"); len(got) != 2 {
		t.Errorf("pg-0 has an earlier pod's logs too: %v", got)
	}
	if got := l.Containers(fixUID); !slices.Equal(got, []string{"api", "istio-init", "istio-proxy"}) {
		t.Errorf("containers of api: %v", got)
	}
}

func TestParseLayoutNames(t *testing.T) {
	for _, tt := range []struct {
		in            string
		ns, name, uid string
		ok            bool
	}{
		{"payments_api-1_" + fixUID, "payments", "api-1", fixUID, true},
		{"kube-system_etcd-n_d41e1dc5ce59d5d4ddd2a69e5ca5c0f2", "kube-system", "etcd-n", "d41e1dc5ce59d5d4ddd2a69e5ca5c0f2", true},
		{"a_b_c_d", "", "", "", false},
		{"a_b_notauid", "", "", "", false},
		{"_b_" + fixUID, "", "", "", false},
	} {
		ns, name, uid, ok := parsePodDir(tt.in)
		if ns != tt.ns || name != tt.name || uid != tt.uid || ok != tt.ok {
			t.Errorf("parsePodDir(%q) = %q %q %q %v", tt.in, ns, name, uid, ok)
		}
	}
	for _, tt := range []struct {
		in               string
		pod, ns, ctr, id string
		ok               bool
	}{
		{"api-1_payments_istio-proxy-" + fixID + ".log", "api-1", "payments", "istio-proxy", fixID, true},
		{"api-1_payments_istio-proxy-" + fixID, "", "", "", "", false},
		{"api-1_payments_-" + fixID + ".log", "", "", "", "", false},
		{"x_y_z-123.log", "", "", "", "", false},
	} {
		pod, ns, ctr, id, ok := parseContainerLog(tt.in)
		if pod != tt.pod || ns != tt.ns || ctr != tt.ctr || id != tt.id || ok != tt.ok {
			t.Errorf("parseContainerLog(%q) = %q %q %q %q %v", tt.in, pod, ns, ctr, id, ok)
		}
	}
}

func TestParseSelector(t *testing.T) {
	if s, err := ParseSelector("payments/api-1", "api"); err != nil || s != (Selector{"payments", "api-1", "api"}) {
		t.Errorf("ParseSelector: %+v %v", s, err)
	}
	for _, bad := range []string{"api-1", "/api", "payments/", "a/b/c", "a_b/c"} {
		if _, err := ParseSelector(bad, ""); !errors.Is(err, ErrBadSelector) {
			t.Errorf("ParseSelector(%q): %v", bad, err)
		}
	}
}

// Real processes moved into real cgroups named as kubelet names them,
// with a real log tree: --pod selects the pod's processes, --container
// one container's, and wrong names are one-line typed errors.
func TestSelectRealProcesses(t *testing.T) {
	testenv.Privileged(t)
	const (
		uid = "3c2b1a09-8f7e-4d6c-9b5a-493827160504"
		app = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
		sc  = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
	)
	root := testenv.KubeletLogs(t, "shop", "web-0", uid, map[string]string{"app": app, "sidecar": sc})
	start := func(id string) int {
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if !testenv.MoveToFakePod(t, cmd.Process.Pid, uid, id) {
			testenv.SkipOrFail(t, "no writable cgroup hierarchy to place a process in")
		}
		return cmd.Process.Pid
	}
	a, b := start(app), start(sc)
	l, err := ReadLogs(root)
	if err != nil {
		t.Fatal(err)
	}
	pids, ids, err := Select(l, Selector{Namespace: "shop", Pod: "web-0"})
	if err != nil || !slices.Equal(pids, []int{min(a, b), max(a, b)}) {
		t.Fatalf("Select pod: %v %v, want %d and %d", pids, err, a, b)
	}
	for i, id := range ids {
		want := "app"
		if pids[i] == b {
			want = "sidecar"
		}
		if id.Namespace != "shop" || id.Pod != "web-0" || id.Container != want || id.PodUID != uid {
			t.Errorf("pid %d: %+v", pids[i], id)
		}
	}
	pids, _, err = Select(l, Selector{Namespace: "shop", Pod: "web-0", Container: "sidecar"})
	if err != nil || !slices.Equal(pids, []int{b}) {
		t.Fatalf("Select container: %v %v, want [%d]", pids, err, b)
	}
	if Main([]int{a, b}) != min(a, b) {
		t.Errorf("Main of two unrelated processes is not the lowest pid")
	}
	for _, tt := range []struct {
		sel  Selector
		want error
	}{
		{Selector{Namespace: "shop", Pod: "web-1"}, ErrPodNotFound},
		{Selector{Namespace: "other", Pod: "web-0"}, ErrPodNotFound},
		{Selector{Namespace: "shop", Pod: "web-0", Container: "db"}, ErrContainerNotFound},
	} {
		if _, _, err := Select(l, tt.sel); !errors.Is(err, tt.want) {
			t.Errorf("Select(%+v) = %v, want %v", tt.sel, err, tt.want)
		}
	}
	// The pod's logs are there but its processes are gone.
	stale := testenv.KubeletLogs(t, "shop", "gone-0", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", map[string]string{"app": app})
	ls, _ := ReadLogs(stale)
	if _, _, err := Select(ls, Selector{Namespace: "shop", Pod: "gone-0"}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("a pod without processes: %v", err)
	}
}

func TestLogRoot(t *testing.T) {
	t.Setenv(EnvLogRoot, "")
	if got := LogRoot(""); got != DefaultLogRoot {
		t.Errorf("default: %q", got)
	}
	t.Setenv(EnvLogRoot, "/host/var/log")
	if got := LogRoot(""); got != "/host/var/log" {
		t.Errorf("from $%s: %q", EnvLogRoot, got)
	}
	if got := LogRoot("/mnt/log"); got != "/mnt/log" {
		t.Errorf("flag first: %q", got)
	}
	// A log root that is a file, not a directory, is an error, not an
	// empty layout.
	if _, err := ReadLogs("testdata/cgroup/host-systemd-v2.txt"); err == nil {
		t.Error("a file as log root read as an empty layout")
	}
}
