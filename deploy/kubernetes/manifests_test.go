// Package kubernetes holds kadiag exporter's Kubernetes manifests; its
// tests decode them strictly into the Kubernetes API types, check what the
// exporter relies on, and run promtool on the alerting rules.
package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kadiag/kadiag/exporter"
	"github.com/kadiag/kadiag/internal/testenv"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	raw  []byte
	kind string
}

func readDocs(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []doc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(part), &tm); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, doc{file: f, raw: []byte(part), kind: tm.APIVersion + "/" + tm.Kind})
		}
	}
	return out
}

func stripComments(s string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(s, "")
}

// strict decodes a document into a typed struct; unknown or duplicate
// fields (a typo, a field in the wrong place) are errors.
func strict(t *testing.T, d doc, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.raw, into); err != nil {
		t.Fatalf("%s (%s): %v", d.file, d.kind, err)
	}
}

// manifests are the decoded objects, one of each kind.
type manifests struct {
	ns             corev1.Namespace
	sa             corev1.ServiceAccount
	ds             appsv1.DaemonSet
	svc            corev1.Service
	serviceMonitor map[string]any
	rule           map[string]any
	kustomization  map[string]any
	// The CRDs again, as the Prometheus Operator's own API types.
	typedMonitor monitoringv1.ServiceMonitor
	typedRule    monitoringv1.PrometheusRule
}

func load(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	seen := map[string]bool{}
	for _, d := range readDocs(t) {
		if seen[d.kind] {
			t.Fatalf("%s: a second %s", d.file, d.kind)
		}
		seen[d.kind] = true
		switch d.kind {
		case "v1/Namespace":
			strict(t, d, &m.ns)
		case "v1/ServiceAccount":
			strict(t, d, &m.sa)
		case "apps/v1/DaemonSet":
			strict(t, d, &m.ds)
		case "v1/Service":
			strict(t, d, &m.svc)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			strict(t, d, &m.serviceMonitor)
			strict(t, d, &m.typedMonitor)
		case "monitoring.coreos.com/v1/PrometheusRule":
			strict(t, d, &m.rule)
			strict(t, d, &m.typedRule)
		case "kustomize.config.k8s.io/v1beta1/Kustomization":
			strict(t, d, &m.kustomization)
		default:
			t.Fatalf("%s: unexpected kind %s", d.file, d.kind)
		}
	}
	for _, k := range []string{"v1/Namespace", "v1/ServiceAccount", "apps/v1/DaemonSet", "v1/Service",
		"monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule",
		"kustomize.config.k8s.io/v1beta1/Kustomization"} {
		if !seen[k] {
			t.Fatalf("no %s manifest", k)
		}
	}
	return m
}

// get walks a decoded CRD by keys and slice indexes.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map at %q", path, k)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("%v: no field %q", path, k)
			}
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("%v: no element %d", path, k)
			}
			v = s[k]
		}
	}
	return v
}

// neededCaps are the capabilities the exporter needs, each documented in
// docs/exporter.md and proven necessary by TestCapabilities.
var neededCaps = []string{"DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"}

func TestManifests(t *testing.T) {
	m := load(t)
	ns := m.ns.Name
	for what, got := range map[string]string{"ServiceAccount": m.sa.Namespace, "DaemonSet": m.ds.Namespace, "Service": m.svc.Namespace,
		"ServiceMonitor": get(t, m.serviceMonitor, "metadata", "namespace").(string), "PrometheusRule": get(t, m.rule, "metadata", "namespace").(string)} {
		if got != ns {
			t.Errorf("%s in namespace %q, want %q", what, got, ns)
		}
	}
	if m.ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace lacks pod-security enforce=privileged: hostPID pods would be rejected")
	}

	// DaemonSet: host PIDs, exactly the needed capabilities, probes, limits.
	ds := m.ds
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is off: the exporter would see only its own pod")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork is not needed")
	}
	if ds.Spec.Selector == nil || !subset(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", ds.Spec.Selector, ds.Spec.Template.Labels)
	}
	if pod.ServiceAccountName != m.sa.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, m.sa.Name)
	}
	if len(pod.Tolerations) == 0 || pod.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Error("no catch-all toleration: tainted nodes would go unwatched")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "exporter" {
		t.Errorf("args %v do not run 'kadiag exporter'", c.Args)
	}
	port := containerPort(t, c, "metrics")
	if !slices.Contains(c.Args, fmt.Sprintf("--listen=:%d", port)) {
		t.Errorf("args %v do not listen on the metrics port %d", c.Args, port)
	}
	// The kubelet's log layout names pods: the node's /var/log, read-only,
	// mounted where --log-root says.
	var logRoot string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--log-root="); ok {
			logRoot = v
		}
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.HostPath != nil && v.HostPath.Path == "/var/log" && vm.MountPath == logRoot && vm.ReadOnly {
				mounted = true
			}
		}
	}
	if logRoot == "" || !mounted {
		t.Errorf("the node's /var/log is not mounted read-only at --log-root %q: pods would have no names", logRoot)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the listed capabilities are enough")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	var added []string
	for _, a := range sc.Capabilities.Add {
		added = append(added, string(a))
	}
	slices.Sort(added)
	if !slices.Equal(added, neededCaps) {
		t.Errorf("capabilities added %v, want exactly %v", added, neededCaps)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem not read-only")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("not run as uid 0: the capabilities would not be effective")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation=false is rejected by the API server together with SYS_ADMIN")
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v is not an HTTP GET of %s on the metrics port", p.probe, p.path)
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		lim, req := c.Resources.Limits[r], c.Resources.Requests[r]
		if lim.IsZero() || req.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s", r, req.String(), lim.String())
		}
	}
	// The benchmark's 100,000 sockets take < 100 MB: leave headroom.
	if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Value() < 128<<20 {
		t.Errorf("memory limit %s is below 128Mi", lim.String())
	}

	// Service: selects the pods, exposes the named port.
	if !subset(m.svc.Spec.Selector, ds.Spec.Template.Labels) || len(m.svc.Spec.Selector) == 0 {
		t.Errorf("service selector %v does not match the pods %v", m.svc.Spec.Selector, ds.Spec.Template.Labels)
	}
	if len(m.svc.Spec.Ports) != 1 || m.svc.Spec.Ports[0].Name != "metrics" || m.svc.Spec.Ports[0].TargetPort.String() != "metrics" || m.svc.Spec.Ports[0].Port != port {
		t.Errorf("service ports %+v, want metrics → metrics (%d)", m.svc.Spec.Ports, port)
	}

	// ServiceMonitor: selects the Service, scrapes its named port.
	sm := m.serviceMonitor
	sel := get(t, sm, "spec", "selector", "matchLabels").(map[string]any)
	for k, v := range sel {
		if m.svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v, the Service has %q", k, v, m.svc.Labels[k])
		}
	}
	if nss := get(t, sm, "spec", "namespaceSelector", "matchNames").([]any); len(nss) != 1 || nss[0] != ns {
		t.Errorf("ServiceMonitor namespaces %v", nss)
	}
	ep := get(t, sm, "spec", "endpoints", 0).(map[string]any)
	if ep["honorLabels"] != true {
		t.Errorf("ServiceMonitor endpoint without honorLabels: the target's namespace/pod/container would overwrite the scanned process's")
	}
	if ep["port"] != "metrics" || ep["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v", ep)
	}

	// The operator's types agree: relabeling of the node label, one group.
	tm := m.typedMonitor
	if len(tm.Spec.Endpoints) != 1 || len(tm.Spec.Endpoints[0].RelabelConfigs) != 1 ||
		tm.Spec.Endpoints[0].RelabelConfigs[0].TargetLabel != "node" {
		t.Errorf("ServiceMonitor endpoints %+v: want one, relabelling the pod's node into label node", tm.Spec.Endpoints)
	}
	if len(m.typedRule.Spec.Groups) != 1 || len(m.typedRule.Spec.Groups[0].Rules) == 0 {
		t.Errorf("PrometheusRule groups %+v", m.typedRule.Spec.Groups)
	}

	// Kustomization lists every manifest.
	files, _ := filepath.Glob("*.yaml")
	var res []string
	for _, r := range get(t, m.kustomization, "resources").([]any) {
		res = append(res, r.(string))
	}
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(res, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container has no port named %q", name)
	return 0
}

// ruleGroups extracts the PrometheusRule's spec.groups as a Prometheus
// rules file.
func ruleGroups(t *testing.T, m *manifests) string {
	t.Helper()
	groups := get(t, m.rule, "spec", "groups")
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// exportedMetrics are the names the exporter describes.
func exportedMetrics() map[string]bool {
	ch := make(chan *prometheus.Desc, 64)
	exporter.New(exporter.Options{}).Describe(ch)
	close(ch)
	out := map[string]bool{}
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := re.FindStringSubmatch(d.String()); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

// slug is GitHub's anchor for a Markdown heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestRules(t *testing.T) {
	m := load(t)
	docs, err := os.ReadFile("../../docs/exporter.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, l := range strings.Split(string(docs), "\n") {
		if h, ok := strings.CutPrefix(l, "#"); ok {
			anchors[slug(strings.TrimLeft(h, "# "))] = true
		}
	}
	metrics := exportedMetrics()
	if !metrics["kadiag_tcp_at_risk_connections"] {
		t.Fatalf("exporter metrics %v lack the at-risk gauge", metrics)
	}
	var sawAlert bool
	for _, g := range get(t, m.rule, "spec", "groups").([]any) {
		for _, r := range get(t, g, "rules").([]any) {
			rule := r.(map[string]any)
			expr := rule["expr"].(string)
			for _, name := range regexp.MustCompile(`\bkadiag_[a-z_]+`).FindAllString(expr, -1) {
				if !metrics[name] {
					t.Errorf("rule %v uses %s, which the exporter does not export", rule["alert"], name)
				}
			}
			if rule["alert"] == nil {
				continue
			}
			ann := rule["annotations"].(map[string]any)
			url, _ := ann["runbook_url"].(string)
			_, anchor, ok := strings.Cut(url, "docs/exporter.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("alert %v: runbook_url %q is no heading of docs/exporter.md", rule["alert"], url)
			}
			if ann["summary"] == "connections at risk of silent idle drop" {
				sawAlert = true
				if !strings.Contains(expr, "kadiag_tcp_at_risk_connections") {
					t.Errorf("the at-risk alert does not use the at-risk gauge: %s", expr)
				}
			}
		}
	}
	if !sawAlert {
		t.Error(`no alert with summary "connections at risk of silent idle drop"`)
	}

	testenv.Need(t, "promtool")
	rules := ruleGroups(t, m)
	if out, err := exec.Command("promtool", "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// promtool evaluates the alert on series shaped like the exporter's:
	// pending for 15 minutes, then firing with the runbook; a process at
	// risk for only 10 minutes, or with nothing at risk, never fires.
	tests := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kadiag_tcp_at_risk_connections{node="n1",namespace="shop",pod="cart-0",container="app",pod_uid="u1",container_id="c1",comm="",reason="keepalive_off"}'
        values: '3x40'
      - series: 'kadiag_tcp_at_risk_connections{node="n1",namespace="shop",pod="cart-0",container="app",pod_uid="u1",container_id="c1b",comm="",reason="keepalive_off"}'
        values: '_x20 1x20'
      - series: 'kadiag_tcp_at_risk_connections{node="n1",namespace="",pod="",container="",pod_uid="",container_id="",comm="curl",reason="idle_too_long"}'
        values: '2x10 0x30'
      - series: 'kadiag_tcp_at_risk_connections{node="n2",namespace="web",pod="nginx-1",container="nginx",pod_uid="u2",container_id="c2",comm="",reason="keepalive_off"}'
        values: '0x40'
      # A replaced pod of the same name: same namespace and pod, new UID.
      - series: 'kadiag_tcp_at_risk_connections{node="n2",namespace="db",pod="pg-0",container="pg",pod_uid="u4",container_id="c4",comm="",reason="keepalive_off"}'
        values: '5x40'
      - series: 'kadiag_tcp_dead_connections{node="n1",namespace="shop",pod="cart-0",container="app",pod_uid="u1",container_id="c1",comm=""}'
        values: '0x10 2x30'
      - series: 'kadiag_tcp_dead_connections{node="n2",namespace="web",pod="nginx-1",container="nginx",pod_uid="u2",container_id="c2",comm=""}'
        values: '0x40'
      # kube-state-metrics: one kube_pod_info per pod, with its uid.
      - series: 'kube_pod_info{namespace="shop",pod="cart-0",uid="u1",node="n1",created_by_kind="StatefulSet",created_by_name="cart"}'
        values: '1x40'
      - series: 'kube_pod_info{namespace="web",pod="nginx-1",uid="u2",node="n2",created_by_kind="ReplicaSet",created_by_name="nginx-7f9c"}'
        values: '1x40'
      - series: 'kube_pod_info{namespace="db",pod="pg-0",uid="u3",node="n2",created_by_kind="StatefulSet",created_by_name="pg"}'
        values: '1x40'
    promql_expr_test:
      - expr: namespace_workload:kadiag_tcp_at_risk_connections:sum
        eval_time: 30m
        exp_samples:
          - labels: 'namespace_workload:kadiag_tcp_at_risk_connections:sum{namespace="shop",created_by_kind="StatefulSet",created_by_name="cart",reason="keepalive_off"}'
            value: 4
          - labels: 'namespace_workload:kadiag_tcp_at_risk_connections:sum{namespace="web",created_by_kind="ReplicaSet",created_by_name="nginx-7f9c",reason="keepalive_off"}'
            value: 0
    alert_rule_test:
      - eval_time: 11m
        alertname: KadiagDeadConnections
        exp_alerts:
          []
      - eval_time: 14m
        alertname: KadiagDeadConnections
        exp_alerts:
          - exp_labels: {severity: critical, node: n1, namespace: shop, pod: cart-0, container: app}
            exp_annotations:
              summary: "connections already forgotten by the NAT"
              description: "2 ESTABLISHED connections of shop/cart-0/app on n1 have no conntrack entry in the node's NAT any more: the application waits on connections that are gone, and the next reply is lost."
              runbook_url: "https://github.com/kadiag/kadiag/blob/main/docs/exporter.md#runbook-dead-connections"
      - eval_time: 10m
        alertname: KadiagConnectionsAtRiskOfSilentIdleDrop
        exp_alerts:
          []
      - eval_time: 30m
        alertname: KadiagConnectionsAtRiskOfSilentIdleDrop
        exp_alerts:
          - exp_labels: {severity: warning, node: n1, namespace: shop, pod: cart-0, container: app, reason: keepalive_off}
            exp_annotations:
              summary: "connections at risk of silent idle drop"
              description: "4 TCP connections of shop/cart-0/app on n1 can sit idle longer than the middlebox idle timeout (keepalive_off): a NAT gateway or load balancer will forget them and the next reply is lost without an error."
              runbook_url: "https://github.com/kadiag/kadiag/blob/main/docs/exporter.md#runbook-connections-at-risk-of-silent-idle-drop"
          - exp_labels: {severity: warning, node: n2, namespace: db, pod: pg-0, container: pg, reason: keepalive_off}
            exp_annotations:
              summary: "connections at risk of silent idle drop"
              description: "5 TCP connections of db/pg-0/pg on n2 can sit idle longer than the middlebox idle timeout (keepalive_off): a NAT gateway or load balancer will forget them and the next reply is lost without an error."
              runbook_url: "https://github.com/kadiag/kadiag/blob/main/docs/exporter.md#runbook-connections-at-risk-of-silent-idle-drop"
`, rules)
	tf := filepath.Join(t.TempDir(), "rules_test.yml")
	if err := os.WriteFile(tf, []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "test", "rules", tf).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("SUCCESS")) {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
