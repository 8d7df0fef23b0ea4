// Package fix holds the Kubernetes manifests of kadiag fix on every node;
// its tests decode them strictly into the Kubernetes API types and run the
// real kadiag with exactly the DaemonSet's arguments and capabilities.
package fix

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kadiag/kadiag/internal/bpf/bpftest"
	"github.com/kadiag/kadiag/internal/testenv"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func daemonSet(t *testing.T) appsv1.DaemonSet {
	t.Helper()
	b, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	return ds
}

func TestManifests(t *testing.T) {
	ds := daemonSet(t)
	for _, f := range []string{"namespace.yaml", "kustomization.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.UnmarshalStrict(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if f == "namespace.yaml" {
			var ns corev1.Namespace
			if err := yaml.UnmarshalStrict(b, &ns); err != nil || ns.Name != ds.Namespace {
				t.Errorf("namespace %q (%v), DaemonSet in %q", ns.Name, err, ds.Namespace)
			}
		}
	}
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("securityContext %+v: want unprivileged, all capabilities dropped", sc)
	}
	if spec.HostPID || spec.HostNetwork {
		t.Error("the policy needs neither the host's PID nor its network namespace")
	}
	if !slicesContain(c.Args, "--hold") || c.Args[0] != "fix" {
		t.Errorf("args %v: want kadiag fix ... --hold (the policy ends with the pod)", c.Args)
	}
	if selector, labels := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels; labels["app.kubernetes.io/name"] != selector["app.kubernetes.io/name"] {
		t.Errorf("selector %v does not match the pod's labels %v", selector, labels)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestCapabilities runs the real kadiag as uid 0 with exactly the
// DaemonSet's capabilities and arguments (the cgroup pointed at a test
// cgroup): it holds the policy, a client in the cgroup gets keepalive, and
// SIGTERM, as the kubelet sends it, detaches it. Without any one of the
// capabilities it fails with one line naming it.
func TestCapabilities(t *testing.T) {
	testenv.Privileged(t)
	testenv.Need(t, "setpriv", "python3")
	ds := daemonSet(t)
	c := ds.Spec.Template.Spec.Containers[0]
	var caps []string
	for _, cp := range c.SecurityContext.Capabilities.Add {
		caps = append(caps, strings.ToLower(string(cp)))
	}
	bin := filepath.Join(t.TempDir(), "kadiag")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/kadiag").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := bpftest.Cgroup(t)
	pod := bpftest.Sub(t, dir, "pod-a")
	args := append([]string{}, c.Args...)
	for i, a := range args {
		if strings.HasPrefix(a, "--cgroup=") {
			args[i] = "--cgroup=" + dir
		}
	}
	run := func(caps []string) *exec.Cmd {
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		return exec.Command("setpriv", append([]string{"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, bin}, args...)...)
	}
	for i := range caps {
		without := append(append([]string{}, caps[:i]...), caps[i+1:]...)
		out, err := run(without).CombinedOutput()
		line := strings.TrimSpace(string(out))
		if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, "CAP_"+strings.ToUpper(caps[i])) {
			t.Errorf("without %s: %v, %q: want exit 2 and one line naming it", caps[i], err, line)
		}
	}

	k := run(caps)
	stdout, _ := k.StdoutPipe()
	var stderr strings.Builder
	k.Stderr = &stderr
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Process.Kill(); k.Wait() })
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "attached") {
				attached <- true
				return
			}
		}
		attached <- false
	}()
	select {
	case ok := <-attached:
		if !ok {
			t.Fatalf("kadiag fix did not attach: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kadiag fix did not attach: %s", stderr.String())
	}
	if ka := clientKeepalive(t, pod); ka != 1 {
		t.Errorf("a pod's new connection: SO_KEEPALIVE %d, want 1", ka)
	}
	k.Process.Signal(syscall.SIGTERM)
	if err := k.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v: %s", err, stderr.String())
	}
	if ka := clientKeepalive(t, pod); ka != 0 {
		t.Errorf("after the pod ended a new connection still has SO_KEEPALIVE %d", ka)
	}
}

// clientKeepalive runs a Python client in cgroup dir that connects over
// loopback and reports SO_KEEPALIVE after turning it off, as Apache
// HttpClient does.
func clientKeepalive(t *testing.T, dir string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command("python3", "-c", fmt.Sprintf(`
import json, socket
s = socket.create_connection(("127.0.0.1", %s))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
print(json.dumps(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)))
`, port))
	bpftest.Into(t, cmd, dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	var v int
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("client said %q", out)
	}
	return v
}
