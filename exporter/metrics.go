package exporter

import (
	"strconv"

	"github.com/kadiag/kadiag/inspect"
	"github.com/prometheus/client_golang/prometheus"
)

// processLabels identify a process. container_id and pod_uid are empty
// for host processes; pid and comm keep the cardinality at one series per
// process that holds TCP sockets.
var processLabels = []string{"pid", "comm", "container_id", "pod_uid"}

// Reasons a connection is at risk, the values of the reason label.
const (
	ReasonKeepaliveOff = "keepalive_off"
	ReasonIdleTooLong  = "idle_too_long"
)

var (
	descEstablished = prometheus.NewDesc("kadiag_tcp_established_connections",
		"TCP connections in state ESTABLISHED held by the process (loopback included).",
		processLabels, nil)
	descAtRisk = prometheus.NewDesc("kadiag_tcp_at_risk_connections",
		"TCP connections of the process that can sit idle past the middlebox idle timeout (kadiag_max_idle_seconds) and be silently dropped: reason keepalive_off (SO_KEEPALIVE not set) or idle_too_long (first keepalive probe after the timeout). Loopback connections are never at risk.",
		append(processLabels[:len(processLabels):len(processLabels)], "reason"), nil)
	descSockets = prometheus.NewDesc("kadiag_tcp_sockets",
		"TCP sockets of the process, listeners included, by how their keepalive settings were read: getsockopt (exact, through pidfd_getfd), inferred (from the kernel's keepalive timer, without ptrace rights) or unknown.",
		append(processLabels[:len(processLabels):len(processLabels)], "keepalive_source"), nil)
	descPreload = prometheus.NewDesc("kadiag_preload_mapped",
		"1 if kadiag's LD_PRELOAD keepalive library (libkadiag_keepalive) is mapped into the process, else 0.",
		processLabels, nil)
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

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEstablished, descAtRisk, descSockets, descPreload,
		descDuration, descLastScan, descScans, descErrors, descNotes, descProcesses, descMaxIdle} {
		ch <- d
	}
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
	for i := range s.Processes {
		p := &s.Processes[i]
		l := []string{strconv.Itoa(p.PID), p.Comm, p.Container.ID, p.Container.PodUID}
		ch <- prometheus.MustNewConstMetric(descEstablished, prometheus.GaugeValue, float64(p.Established), l...)
		ch <- prometheus.MustNewConstMetric(descAtRisk, prometheus.GaugeValue, float64(p.AtRiskKeepaliveOff), append(l, ReasonKeepaliveOff)...)
		ch <- prometheus.MustNewConstMetric(descAtRisk, prometheus.GaugeValue, float64(p.AtRiskIdleTooLong), append(l, ReasonIdleTooLong)...)
		for _, src := range sources {
			ch <- prometheus.MustNewConstMetric(descSockets, prometheus.GaugeValue, float64(p.Sockets[src]), append(l, string(src))...)
		}
		preload := 0.0
		if p.PreloadMapped {
			preload = 1
		}
		ch <- prometheus.MustNewConstMetric(descPreload, prometheus.GaugeValue, preload, l...)
	}
}
