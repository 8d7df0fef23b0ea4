package capture

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Schema names the JSON contract of a capture report.
const Schema = "kadiag.capture/v1"

// Verdicts of a flow.
const (
	VerdictOK     = "ok"
	VerdictAtRisk = "at-risk"
)

// Outcomes of --assert-probes-every for a flow.
const (
	AssertPass = "pass"
	AssertFail = "fail"
)

// Result is what one capture showed: every TCP flow with its keepalive
// evidence and verdict. Its JSON form is the kadiag.capture/v1 contract.
type Result struct {
	Schema             string    `json:"schema"`
	Source             string    `json:"source,omitempty"`
	MaxIdleS           float64   `json:"max_idle_s"`
	AssertProbesEveryS float64   `json:"assert_probes_every_s,omitempty"`
	Start              time.Time `json:"start,omitzero"`
	End                time.Time `json:"end,omitzero"`
	Flows              []Flow    `json:"flows"`
	Summary            Summary   `json:"summary"`
	// Notes are things the reader should know about the input: skipped link
	// types, packets cut short, a file that ended early.
	Notes []string `json:"notes,omitempty"`
	// ReadError is set when the input broke off: the flows are what was read
	// before.
	ReadError string `json:"read_error,omitempty"`
}

// Interval summarises the time between consecutive keepalive probes sent
// in the same direction, in seconds.
type Interval struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	// Count is how many intervals there were (probes minus one per side).
	Count int `json:"count"`
}

// Flow is the report for one bidirectional TCP flow.
type Flow struct {
	Client string `json:"client"`
	Server string `json:"server"`
	// Orientation says how client and server were told apart: "syn" (the
	// handshake was captured) or "port" (the lower port is the server's).
	Orientation string `json:"orientation"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	// Probes counts keepalive probes: segments of 0 or 1 byte one below
	// the next expected sequence number, no SYN/FIN/RST (Wireshark's
	// tcp.analysis.keep_alive), except zero window probes. When the capture
	// began mid-connection, probes are also recognised by their sequence
	// number being one below the peer's acknowledgement.
	Probes int `json:"probes"`
	// ProbeAcks counts the peer's answers to probes (Wireshark's
	// tcp.analysis.keep_alive_ack; mid-connection also an ACK of a probe's
	// sequence number plus one).
	ProbeAcks      int      `json:"probe_acks"`
	ProbeIntervalS Interval `json:"probe_interval_s"`
	MaxGapS        float64  `json:"max_gap_s"`
	RSTs           int      `json:"rsts"`
	Verdict        string   `json:"verdict"`
	// Reason says in words why a flow is at risk or failed the assertion.
	Reason           string  `json:"reason,omitempty"`
	ClientProbes     int     `json:"client_probes"`
	ServerProbes     int     `json:"server_probes"`
	IdleBeforeProbeS float64 `json:"idle_before_first_probe_s,omitempty"`
	UnansweredProbes int     `json:"unanswered_probes"`
	ZeroWindowProbes int     `json:"zero_window_probes"`
	// WiresharkKeepAlives is how many segments Wireshark flags as
	// tcp.analysis.keep_alive: Probes plus the zero window probes Linux sends
	// in keepalive form. For cross-checking with Wireshark.
	WiresharkKeepAlives int `json:"wireshark_keep_alives"`
	// WiresharkKeepAliveAcks is how many segments Wireshark flags as
	// tcp.analysis.keep_alive_ack. It equals ProbeAcks when the handshake
	// was captured; without it kadiag also recognises probes and their ACKs
	// Wireshark cannot (see Probes).
	WiresharkKeepAliveAcks int `json:"wireshark_keep_alive_acks"`
	Retransmissions        int `json:"retransmissions"`
	// TrailingIdleS is the silence from the flow's last packet to the end of
	// the capture, for flows still open; it counts toward MaxGapS.
	TrailingIdleS float64   `json:"trailing_idle_s"`
	Closed        bool      `json:"closed"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	// Assertion is "pass" or "fail" when --assert-probes-every was given.
	Assertion string `json:"assertion,omitempty"`
	// Events is the flow's timeline when Options.Timeline was set; it is not
	// part of the JSON contract.
	Events []TimelineEvent `json:"-"`
}

// Summary counts flows and packets.
type Summary struct {
	Flows   int    `json:"flows"`
	OK      int    `json:"ok"`
	AtRisk  int    `json:"at_risk"`
	Packets uint64 `json:"packets"`
	// TCPPackets is how many packets belonged to the reported flows.
	TCPPackets   uint64 `json:"tcp_packets"`
	Probes       int    `json:"probes"`
	AssertFailed int    `json:"assert_failed"`
	// SnaplenCut counts frames captured shorter than they were sent; they
	// are analysed from their headers.
	SnaplenCut uint64 `json:"snaplen_cut"`
	// TruncatedTCP counts TCP packets cut inside the TCP header: skipped.
	TruncatedTCP    uint64 `json:"truncated_tcp"`
	UnknownLinkType uint64 `json:"unknown_link_type"`
}

func seconds(ns int64) float64 {
	// Millisecond precision: enough for idle limits, stable in JSON.
	return math.Round(float64(ns)/1e6) / 1e3
}

// report turns the live state of a flow into its report.
func (f *flow) report(endNs int64, opts Options) Flow {
	// Probes held for a peer that never answered were keepalives: a zero
	// window probe needs a zero window the peer would have advertised.
	f.flushHeld(0)
	f.flushHeld(1)
	client := int(f.client)
	orient := "syn"
	if client < 0 {
		orient = "port"
		// Without a handshake the server is the side with the lower port,
		// usually a well-known or service port against an ephemeral one.
		client = 0
		if f.ep[1].port > f.ep[0].port {
			client = 1
		}
	}
	server := 1 - client
	o := &f.obs
	out := Flow{
		Client:                 f.ep[client].String(),
		Server:                 f.ep[server].String(),
		Orientation:            orient,
		Packets:                o.packets,
		Bytes:                  o.bytes,
		Probes:                 int(o.dir[0].probes + o.dir[1].probes),
		ProbeAcks:              int(o.probeAcks),
		ClientProbes:           int(o.dir[client].probes),
		ServerProbes:           int(o.dir[server].probes),
		RSTs:                   int(o.rsts),
		UnansweredProbes:       int(o.unanswered),
		ZeroWindowProbes:       int(f.zeroWindowProbes),
		WiresharkKeepAlives:    int(f.wiresharkKeepAlives),
		WiresharkKeepAliveAcks: int(f.wiresharkKeepAliveAcks),
		Retransmissions:        int(f.retransmissions),
		Closed:                 o.closed,
		Start:                  time.Unix(0, o.first).UTC(),
		Events:                 o.timelineEvents(client),
		End:                    time.Unix(0, o.last).UTC(),
	}
	// A probe still waiting at the end of the capture counts as unanswered
	// only when its peer had time to answer; the last probe of a capture
	// that ends right after it is not evidence of loss.
	for d := range o.dir {
		if o.dir[d].pending && endNs-o.dir[d].lastProbe >= int64(time.Second) {
			out.UnansweredProbes++
		}
	}
	if o.intervals.n > 0 {
		out.ProbeIntervalS = Interval{
			Min:    seconds(int64(o.intervals.min)),
			Median: seconds(int64(o.intervals.median())),
			Max:    seconds(int64(o.intervals.max)),
			Count:  int(o.intervals.n),
		}
	}
	if o.firstProbeIdle >= 0 {
		out.IdleBeforeProbeS = seconds(o.firstProbeIdle)
	}
	maxGap := o.maxGap
	if !o.closed && endNs > o.last {
		trailing := endNs - o.last
		out.TrailingIdleS = seconds(trailing)
		maxGap = max(maxGap, trailing)
	}
	out.MaxGapS = seconds(maxGap)

	maxIdle := opts.MaxIdle
	out.Verdict = VerdictOK
	switch {
	case maxIdle > 0 && maxGap >= int64(maxIdle):
		out.Verdict = VerdictAtRisk
		if out.Probes == 0 {
			out.Reason = fmt.Sprintf("silent for %s with no keepalive probe, middlebox forgets after %s",
				human(maxGap), human(int64(maxIdle)))
		} else {
			out.Reason = fmt.Sprintf("silent for %s between packets, middlebox forgets after %s",
				human(maxGap), human(int64(maxIdle)))
		}
	case out.UnansweredProbes > 0:
		out.Verdict = VerdictAtRisk
		out.Reason = fmt.Sprintf("%d keepalive probe(s) unanswered: the peer or a middlebox dropped them", out.UnansweredProbes)
	}
	if opts.ProbesEvery > 0 {
		out.Assertion = AssertPass
		if maxGap > int64(opts.ProbesEvery) {
			out.Assertion = AssertFail
			why := fmt.Sprintf("silent for %s without a probe, asserted a probe at least every %s",
				human(maxGap), human(int64(opts.ProbesEvery)))
			if out.Reason == "" {
				out.Reason = why
			} else {
				out.Reason += "; " + why
			}
		}
	}
	return out
}

// human prints a duration in seconds the way idle limits are written
// ("350s", "1.5s"); the reports package owns the richer formats, but cannot
// be imported here (it renders this package's results).
func human(ns int64) string {
	return strconv.FormatFloat(math.Round(float64(ns)/1e8)/10, 'f', -1, 64) + "s"
}
