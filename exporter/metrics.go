package exporter

import (
	"sort"
	"strconv"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/label"
	"github.com/prometheus/client_golang/prometheus"
)

// groupLabels identify a container (namespace, pod and container as
// cAdvisor and kube-state-metrics name them, plus pod_uid and
// container_id) or, for a process outside any pod, its comm. With
// --per-process, pid is added and comm is set for every process.
var (
	groupLabels   = []string{"namespace", "pod", "container", "pod_uid", "container_id", "comm"}
	processLabels = append(groupLabels[:len(groupLabels):len(groupLabels)], "pid")
	netnsLabels   = []string{"netns", "namespace", "pod"}
)

// Reasons a connection is at risk, the values of the reason label.
const (
	ReasonKeepaliveOff = "keepalive_off"
	ReasonIdleTooLong  = "idle_too_long"
)

// descs are the per-group metrics, built for one label set.
type descs struct {
	established, atRisk, idle, dead, sockets, preload, processes *prometheus.Desc
}

func newDescs(labels []string) descs {
	with := func(extra string) []string { return append(labels[:len(labels):len(labels)], extra) }
	return descs{
		established: prometheus.NewDesc("kadiag_tcp_established_connections",
			"TCP connections in state ESTABLISHED held by the container's processes (loopback included).",
			labels, nil),
		atRisk: prometheus.NewDesc("kadiag_tcp_at_risk_connections",
			"TCP connections of the container's processes that can sit idle past the middlebox idle timeout (kadiag_max_idle_seconds) and be silently dropped: reason keepalive_off (SO_KEEPALIVE not set) or idle_too_long (first keepalive probe after the timeout). Loopback connections are never at risk.",
			with("reason"), nil),
		idle: prometheus.NewDesc("kadiag_tcp_idle_keepalive_off_connections",
			"ESTABLISHED connections through a middlebox (not loopback) with keepalive off that have received nothing for longer than kadiag_max_idle_seconds: a middlebox with that timeout has already forgotten them.",
			labels, nil),
		dead: prometheus.NewDesc("kadiag_tcp_dead_connections",
			"ESTABLISHED connections whose flow a NAT on this node (--conntrack-netns) has already forgotten: no conntrack entry although its timeout has passed. The application waits on a connection that is gone; the next reply is lost.",
			labels, nil),
		sockets: prometheus.NewDesc("kadiag_tcp_sockets",
			"TCP sockets of the container's processes, listeners included, by how their keepalive settings were read: getsockopt (exact, through pidfd_getfd), inferred (from the kernel's keepalive timer, without ptrace rights) or unknown.",
			with("keepalive_source"), nil),
		preload: prometheus.NewDesc("kadiag_preload_mapped",
			"Processes of the container (with --per-process: 1 or 0 for the process) into which kadiag's LD_PRELOAD keepalive library (libkadiag_keepalive) is mapped.",
			labels, nil),
		processes: prometheus.NewDesc("kadiag_tcp_processes",
			"Processes of the container holding at least one TCP socket (with --per-process: 1).",
			labels, nil),
	}
}

var (
	byGroup   = newDescs(groupLabels)
	byProcess = newDescs(processLabels)

	descKeepaliveProbes = prometheus.NewDesc("kadiag_tcp_keepalive_probes_total",
		"Keepalive probes sent by the sockets of a network namespace (TcpExt TCPKeepAlive read inside it), labelled with the pod that owns the namespace: zero growth on a node full of idle connections means no probes go out.",
		netnsLabels, nil)
	descDuration = prometheus.NewDesc("kadiag_scan_duration_seconds",
		"Wall time of the last completed node-wide scan.", nil, nil)
	descLastScan = prometheus.NewDesc("kadiag_last_scan_timestamp_seconds",
		"Unix time at which the last completed scan finished; the process metrics describe that moment.", nil, nil)
	descScans = prometheus.NewDesc("kadiag_scans_total",
		"Node-wide scans run, failed ones included.", nil, nil)
	descErrors = prometheus.NewDesc("kadiag_scan_errors_total",
		"Node-wide scans that failed; the previous snapshot keeps being served.", nil, nil)
	descNotes = prometheus.NewDesc("kadiag_scan_warnings",
		"Non-fatal problems in the last completed scan (skipped namespaces, processes whose keepalive values had to be inferred); the exporter log and 'kadiag sockets --all' name them.", nil, nil)
	descProcesses = prometheus.NewDesc("kadiag_scan_processes",
		"Processes holding at least one TCP socket in the last completed scan.", nil, nil)
	descMaxIdle = prometheus.NewDesc("kadiag_max_idle_seconds",
		"The middlebox idle timeout connections are judged against (--max-idle).", nil, nil)
)

var sources = []inspect.Source{inspect.BPF, inspect.Exact, inspect.Inferred, inspect.Unknown}

func (e *Exporter) descs() descs {
	if e.o.PerProcess {
		return byProcess
	}
	return byGroup
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	d := e.descs()
	for _, d := range []*prometheus.Desc{d.established, d.atRisk, d.idle, d.dead, d.sockets, d.preload, d.processes,
		descKeepaliveProbes, descDuration, descLastScan, descScans, descErrors, descNotes, descProcesses, descMaxIdle} {
		ch <- d
	}
}

// group is the sum of the processes that share one label set.
type group struct {
	labels                                    []string
	established, off, long, idle, dead, procs int
	preload                                   int
	sockets                                   map[inspect.Source]int
}

// groups sums the snapshot's processes by label set, in a stable order.
func (e *Exporter) groups(s *Snapshot) []*group {
	m := map[string]*group{}
	var out []*group
	for i := range s.Processes {
		p := &s.Processes[i]
		id := p.Pod
		comm := p.Comm
		if id.InPod() && !e.o.PerProcess {
			// A container's processes are one series set, whatever their names.
			comm = ""
		}
		l := []string{id.Namespace, id.Pod, id.Container, id.PodUID, id.ContainerID, comm}
		if e.o.PerProcess {
			l = append(l, strconv.Itoa(p.PID))
		}
		for i := range l {
			l[i] = label.Clean(l[i])
		}
		key := ""
		for _, v := range l {
			key += v + "\x00"
		}
		g, ok := m[key]
		if !ok {
			g = &group{labels: l, sockets: map[inspect.Source]int{}}
			m[key] = g
			out = append(out, g)
		}
		g.procs++
		g.established += p.Established
		g.off += p.AtRiskKeepaliveOff
		g.long += p.AtRiskIdleTooLong
		g.idle += p.IdleKeepaliveOff
		g.dead += p.Dead
		for src, n := range p.Sockets {
			g.sockets[src] += n
		}
		if p.PreloadMapped {
			g.preload++
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].labels, out[j].labels
		for k := range a {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return false
	})
	return out
}

// Collect implements prometheus.Collector. It renders the last completed
// snapshot and never scans.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descScans, prometheus.CounterValue, float64(e.scans.Load()))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(e.failures.Load()))
	ch <- prometheus.MustNewConstMetric(descMaxIdle, prometheus.GaugeValue, e.o.MaxIdle.Seconds())
	s := e.snap.Load()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, s.Duration.Seconds())
	ch <- prometheus.MustNewConstMetric(descLastScan, prometheus.GaugeValue, float64(s.Start.Add(s.Duration).UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(descNotes, prometheus.GaugeValue, float64(len(s.Notes)))
	ch <- prometheus.MustNewConstMetric(descProcesses, prometheus.GaugeValue, float64(len(s.Processes)))
	d := e.descs()
	for _, g := range e.groups(s) {
		l := g.labels
		emit(ch, d.established, prometheus.GaugeValue, float64(g.established), l...)
		emit(ch, d.atRisk, prometheus.GaugeValue, float64(g.off), append(l, ReasonKeepaliveOff)...)
		emit(ch, d.atRisk, prometheus.GaugeValue, float64(g.long), append(l, ReasonIdleTooLong)...)
		emit(ch, d.idle, prometheus.GaugeValue, float64(g.idle), l...)
		emit(ch, d.dead, prometheus.GaugeValue, float64(g.dead), l...)
		for _, src := range sources {
			emit(ch, d.sockets, prometheus.GaugeValue, float64(g.sockets[src]), append(l, string(src))...)
		}
		emit(ch, d.preload, prometheus.GaugeValue, float64(g.preload), l...)
		emit(ch, d.processes, prometheus.GaugeValue, float64(g.procs), l...)
	}
	for _, n := range s.Netns {
		emit(ch, descKeepaliveProbes, prometheus.CounterValue, float64(n.KeepaliveProbes), n.Netns, n.Pod.Namespace, n.Pod.Name)
	}
}

// emit sends one metric. Label values are text from the node (a comm any
// user can set to arbitrary bytes), so they go through label.Clean, the
// rule every report format uses. Should a metric still be refused, the
// refusal is sent in its place: the scrape reports it
// (promhttp_metric_handler_errors_total, the handler's log) and every other
// series is still served, instead of a panic that drops the rest.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) {
	for i, l := range labels {
		labels[i] = label.Clean(l)
	}
	m, err := prometheus.NewConstMetric(d, vt, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}
