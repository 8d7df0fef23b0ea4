package capture

import (
	"fmt"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/kadiag/kadiag/middlebox"
)

// Options set the checks a capture is judged by.
type Options struct {
	// MaxIdle is the middlebox's idle limit: a flow that stays silent this
	// long is at risk (middlebox.DefaultIdle when zero).
	MaxIdle time.Duration
	// ProbesEvery, when set, fails every flow that stayed silent longer than
	// this while open (--assert-probes-every).
	ProbesEvery time.Duration
	// Ports, when set, keeps only flows with one of these ports on either
	// side (live capture of one process).
	Ports map[uint16]bool
	// Timeline records each flow's events (Flow.Events) for the HTML and
	// Markdown timelines.
	Timeline bool
}

// Analyzer follows TCP flows packet by packet. Feed it frames in capture
// order, then call Result. It is not safe for concurrent use.
type Analyzer struct {
	opts  Options
	dec   *decoder
	flows flowTable
	done  []*flow // flows replaced by a new connection on the same ports
	// lastFlow is the previous segment's flow: comparing its endpoints is
	// cheaper than a map lookup.
	lastFlow *flow
	seg      segment
	order    int
	stats    Summary
	first    int64
	last     int64
	badLink  map[layers.LinkType]bool
}

// NewAnalyzer returns an empty analyzer.
func NewAnalyzer(opts Options) *Analyzer {
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = middlebox.DefaultIdle
	}
	return &Analyzer{opts: opts, dec: newDecoder(), flows: newFlowTable(), badLink: map[layers.LinkType]bool{}}
}

// Feed analyses one captured frame of the given link type. data may be
// reused by the caller once Feed returns.
func (a *Analyzer) Feed(lt layers.LinkType, data []byte, ci gopacket.CaptureInfo) {
	a.feed(lt, data, ci.Timestamp.UnixNano(), ci.CaptureLength < ci.Length)
}

// feed is Feed for a frame captured at ts (ns since the epoch); cut says it
// was captured shorter than sent.
func (a *Analyzer) feed(lt layers.LinkType, data []byte, ts int64, cut bool) {
	a.account(lt, ts, cut, a.dec.decode(lt, data, &a.seg), &a.seg)
}

// account analyses a frame of link type lt captured at ts, which the
// decoder made r of, filling s when it is TCP; cut says it was captured
// shorter than sent. s is changed.
func (a *Analyzer) account(lt layers.LinkType, ts int64, cut bool, r decodeResult, s *segment) {
	a.stats.Packets++
	if a.first == 0 || ts < a.first {
		a.first = ts
	}
	if ts > a.last {
		a.last = ts
	}
	if cut {
		a.stats.SnaplenCut++
	}
	switch r {
	case notTCP:
		return
	case truncatedTCP:
		a.stats.TruncatedTCP++
		return
	case badLinkType:
		a.badLink[lt] = true
		a.stats.UnknownLinkType++
		return
	}
	if a.opts.Ports != nil && !a.opts.Ports[s.src.port] && !a.opts.Ports[s.dst.port] {
		return
	}
	a.stats.TCPPackets++
	s.ts = ts
	f, d := a.lastFlow, 0
	switch {
	case f != nil && s.src == f.ep[0] && s.dst == f.ep[1]:
	case f != nil && s.src == f.ep[1] && s.dst == f.ep[0]:
		d = 1
	default:
		f, d = a.lookup(s)
	}
	if s.flags&(flagSYN|flagACK) == flagSYN && (f.obs.closed || (f.isnSet[d] && f.isn[d] != s.seq)) {
		// A new SYN on the ports of a finished connection, or with another
		// initial sequence number, starts a new connection (Wireshark starts
		// a new tcp.stream the same way).
		a.done = append(a.done, f)
		f, d = a.newFlow(s), 0
	}
	a.lastFlow = f
	f.add(s, d)
}

// lookup finds (or starts) the flow of s and the direction s goes in it.
// The previous segment's flow is checked before it (Feed): captures carry
// runs of one flow's packets, a request, its answer, the ACK.
func (a *Analyzer) lookup(s *segment) (*flow, int) {
	h := pairHash(&s.src, &s.dst)
	if f, d := a.flows.get(&s.src, &s.dst, h); f != nil {
		return f, d
	}
	return a.newFlowHashed(s, h), 0
}

// newFlow starts the flow of s, whose sender is its direction 0.
func (a *Analyzer) newFlow(s *segment) *flow {
	return a.newFlowHashed(s, pairHash(&s.src, &s.dst))
}

// newFlowHashed is newFlow when the endpoints' pairHash h is known.
func (a *Analyzer) newFlowHashed(s *segment, h uint64) *flow {
	f := newFlow(s.src, s.dst, a.order)
	f.hash = h
	if a.opts.Timeline {
		f.obs.tl = &timeline{}
	}
	a.order++
	a.flows.put(f)
	return f
}

// Result reports every flow seen so far. end is when the capture ended
// (zero: the last packet's time); it bounds the silence of flows still open.
func (a *Analyzer) Result(end time.Time) *Result { return a.result(end, false) }

// result is Result; with release the analyzer lets go of each flow once it
// is reported, so a capture's flows and its report are not both held whole
// (Read's analyzer is used once).
func (a *Analyzer) result(end time.Time, release bool) *Result {
	endNs := a.last
	if !end.IsZero() {
		endNs = max(end.UnixNano(), a.last)
	}
	all := append([]*flow(nil), a.done...)
	a.flows.each(func(f *flow) { all = append(all, f) })
	sort.Slice(all, func(i, j int) bool { return all[i].order < all[j].order })
	if release {
		a.flows, a.done, a.lastFlow = newFlowTable(), nil, nil
	}
	maxIdle := a.opts.MaxIdle
	r := &Result{
		Schema:   Schema,
		MaxIdleS: maxIdle.Seconds(),
		Flows:    make([]Flow, 0, len(all)),
	}
	if a.opts.ProbesEvery > 0 {
		r.AssertProbesEveryS = a.opts.ProbesEvery.Seconds()
	}
	if a.first != 0 {
		r.Start = time.Unix(0, a.first).UTC()
		r.End = time.Unix(0, endNs).UTC()
	}
	for lt := range a.badLink {
		r.Notes = append(r.Notes, "frames of link type "+lt.String()+" skipped: kadiag reads Ethernet, Linux SLL/SLL2, raw IP and BSD loopback")
	}
	if a.stats.SnaplenCut > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d packets were captured shorter than sent (snaplen); analysed from their headers", a.stats.SnaplenCut))
	}
	if a.stats.TruncatedTCP > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d TCP packets were cut inside the TCP header and skipped: capture with a snaplen of at least 128 bytes (tcpdump -s 128)", a.stats.TruncatedTCP))
	}
	sum := a.stats
	for i, f := range all {
		fl := f.report(endNs, a.opts)
		if release {
			all[i] = nil
		}
		switch fl.Verdict {
		case VerdictOK:
			sum.OK++
		case VerdictAtRisk:
			sum.AtRisk++
		}
		if fl.Assertion == AssertFail {
			sum.AssertFailed++
		}
		sum.Probes += fl.Probes
		r.Flows = append(r.Flows, fl)
	}
	sum.Flows = len(r.Flows)
	r.Summary = sum
	return r
}
