package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/internal/label"
	"github.com/kadiag/kadiag/internal/pod"
)

// Sockets renders a socket scan. Its JSON is the kadiag.sockets/v1 contract
// of inspect.Report, unchanged.
type Sockets struct {
	*inspect.Report
}

// WriteTable writes one line per socket, like ss, then one line per network
// namespace with its keepalive sysctls and a summary line.
func (s Sockets) WriteTable(out io.Writer) error {
	// tabwriter writes cell by cell: unbuffered, 54,000 sockets are
	// over a million write calls.
	w := bufio.NewWriterSize(out, 64<<10)
	if err := s.writeTable(w); err != nil {
		return err
	}
	return w.Flush()
}

func (s Sockets) writeTable(w io.Writer) error {
	t := NewTable(w)
	// The POD column appears only when a process runs in a pod, so a
	// host's table keeps its layout.
	pods, ct := false, false
	for _, p := range s.Processes {
		pods = pods || p.Pod != nil
		for _, sk := range p.Sockets {
			ct = ct || sk.Conntrack != nil || sk.Verdict == inspect.Dead
		}
	}
	if pods {
		fmt.Fprint(t, "POD\t")
	}
	fmt.Fprintln(t, "PID\tCOMM\tFD\tSTATE\tLOCAL\tREMOTE\tKEEPALIVE\tIDLE\tINTVL\tCNT\tDEAD PEER\tUSER TIMEOUT\tTIMER\t"+conntrackHeader(ct)+"VERDICT\tREASON")
	var row []byte
	for _, p := range s.Processes {
		pid, comm := strconv.Itoa(p.PID), label.Clean(p.Comm)
		if p.PID == 0 {
			pid, comm = "-", label.Clean(p.NetnsPath)
		}
		for _, sk := range p.Sockets {
			fd := strconv.Itoa(sk.FD)
			if sk.FD < 0 {
				fd = "-"
			}
			k := sk.Keepalive
			ka, idle, intvl, cnt, dead, ut := "off", "-", "-", "-", "never", "-"
			if k.Enabled {
				ka = "on"
				idle, intvl, cnt = Seconds(k.IdleS), Seconds(k.IntervalS), strconv.Itoa(k.Count)
				dead = Seconds(sk.DeadPeerS)
			}
			if k.UserTimeoutMs > 0 {
				ut = HumanDuration(time.Duration(k.UserTimeoutMs) * time.Millisecond)
			}
			if k.UserTimeoutUnsupported {
				ut = "not supported"
			}
			if sk.Protocol == "mptcp" {
				ka += " (mptcp)"
			}
			switch k.Source {
			case inspect.Inferred:
				ka += " (inferred)"
				if k.Enabled && k.IdleLowerBound {
					idle = "≥" + idle
				} else if k.Enabled {
					idle = "~" + idle
				}
			case inspect.Unknown:
				ka, idle, intvl, cnt, dead, ut = "?", "?", "?", "?", "?", "?"
			}
			reason := sk.Reason
			if reason == "" {
				reason = "-"
			}
			// A row is appended into one buffer and written once: Fprintf
			// with sixteen boxed strings per socket was most of the
			// table's time on 100,000 sockets.
			row = row[:0]
			if pods {
				row = append(append(row, podName(p.Pod)...), '\t')
			}
			for _, c := range [...]string{pid, comm, fd, sk.State, sk.Local, sk.Remote, ka, idle, intvl, cnt, dead, ut} {
				row = append(append(row, c...), '\t')
			}
			if sk.Timer != "" {
				row = append(append(row, sk.Timer...), ',')
				row = append(append(row, HumanDuration(time.Duration(sk.TimerExpiresMs)*time.Millisecond)...), ',')
				row = strconv.AppendInt(row, int64(sk.TimerRetrans), 10)
			} else {
				row = append(row, '-')
			}
			row = append(row, '\t')
			row = append(row, conntrackCell(ct, sk)...)
			row = append(append(row, sk.Verdict...), '\t')
			row = append(append(row, reason...), '\n')
			if _, err := t.Write(row); err != nil {
				return err
			}
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	var nss []string
	for _, p := range s.Processes {
		if seen[p.Netns] {
			continue
		}
		seen[p.Netns] = true
		sy := p.Sysctl
		line := fmt.Sprintf("%s: sysctl defaults: keepalive time %s, interval %s, probes %d", p.Netns,
			Seconds(sy.KeepaliveTime), Seconds(sy.KeepaliveIntvl), sy.KeepaliveProbes)
		if sy.KeepaliveTime == 0 {
			line = p.Netns + ": sysctl defaults unreadable"
		}
		nss = append(nss, line)
	}
	sort.Strings(nss)
	for _, l := range nss {
		fmt.Fprintln(w, l)
	}
	sum := s.Summary
	_, err := fmt.Fprintf(w, "%d sockets: %d ok, %d at-risk, %d local, %d unknown%s; %d listening (max idle %s)\n",
		sum.Sockets, sum.OK, sum.AtRisk, sum.Local, sum.Unknown, deadCount(sum), sum.Listening, Seconds(s.MaxIdleS))
	return err
}

// JUnit has a suite per process and a test case per connected socket: at-risk
// sockets fail, undetermined ones are skipped (they fail under --strict).
func (s Sockets) JUnit() Suites {
	out := Suites{Name: "kadiag sockets"}
	for _, p := range s.Processes {
		name := fmt.Sprintf("pid %d %s", p.PID, label.Clean(p.Comm))
		if p.Pod != nil {
			name += " (" + podName(p.Pod) + ")"
		}
		if p.PID == 0 {
			name = "netns " + label.Clean(p.NetnsPath)
		}
		suite := Suite{Name: name, Props: []Property{
			{Name: "netns", Value: p.Netns},
			{Name: "max_idle_s", Value: strconv.Itoa(s.MaxIdleS)},
		}}
		for _, sk := range p.Sockets {
			if sk.Verdict == inspect.Listen {
				continue
			}
			c := Case{
				Name:      fmt.Sprintf("fd %d %s -> %s", sk.FD, sk.Local, sk.Remote),
				Classname: "kadiag.sockets." + label.Clean(p.Comm),
			}
			if sk.FD < 0 {
				c.Name = fmt.Sprintf("inode %d %s -> %s", sk.Inode, sk.Local, sk.Remote)
			}
			switch sk.Verdict {
			case inspect.AtRisk, inspect.Dead:
				c.Failure = &Failure{Message: sk.Reason, Type: string(sk.Verdict)}
			case inspect.Undetermined:
				if s.Strict {
					c.Failure = &Failure{Message: sk.Reason, Type: string(sk.Verdict)}
				} else {
					c.Skipped = &Skipped{Message: sk.Reason}
				}
			case inspect.Local:
				c.SystemOut = sk.Reason
			}
			suite.Cases = append(suite.Cases, c)
		}
		out.Add(suite)
	}
	return out
}

// WriteJSON writes the report's JSON (the fields of inspect.Report's tags)
// with one socket per line: an indenting encoder takes longer than the scan
// itself on a host with 100,000 sockets, and a line per socket suits grep.
func (s Sockets) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	// The report and process headers come from encoding/json itself, with
	// their socket lists left out, so every field keeps its tag.
	head := *s.Report
	head.Processes = nil
	hb, err := json.Marshal(head)
	if err != nil {
		return err
	}
	const procsKey = `,"processes":null`
	before, after, ok := bytes.Cut(hb, []byte(procsKey))
	if !ok {
		return fmt.Errorf("sockets json: %s missing", procsKey)
	}
	bw.Write(before)
	bw.WriteString(`,"processes":[`)
	var bufs [jsonWorkers][]byte
	for i, p := range s.Processes {
		if i > 0 {
			bw.WriteByte(',')
		}
		socks := p.Sockets
		p.Sockets = nil
		p.Comm, p.NetnsPath = label.Clean(p.Comm), label.Clean(p.NetnsPath)
		pb, err := json.Marshal(p)
		if err != nil {
			return err
		}
		const sockKey = `"sockets":null}`
		if !bytes.HasSuffix(pb, []byte(sockKey)) {
			return fmt.Errorf("sockets json: %s not last", sockKey)
		}
		bw.WriteString("\n  ")
		bw.Write(pb[:len(pb)-len(sockKey)])
		bw.WriteString(`"sockets":[`)
		if err := writeSocketsJSON(bw, socks, &bufs); err != nil {
			return err
		}
		bw.WriteString("]}")
	}
	bw.WriteString("\n]")
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// jsonWorkers and jsonChunk: sockets are encoded by up to jsonWorkers
// goroutines, jsonChunk each at a time, then written in order: encoding
// one socket takes longer than writing it, and a window of
// jsonWorkers*jsonChunk sockets bounds the memory it takes.
const (
	jsonWorkers = 4
	jsonChunk   = 4096
)

// writeSocketsJSON writes socks as the elements of a JSON array, one per
// line, each exactly as encoding/json encodes it.
func writeSocketsJSON(bw *bufio.Writer, socks []inspect.Socket, bufs *[jsonWorkers][]byte) error {
	workers := min(jsonWorkers, runtime.GOMAXPROCS(0))
	for lo := 0; lo < len(socks); lo += workers * jsonChunk {
		var errs [jsonWorkers]error
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			a := lo + w*jsonChunk
			if a >= len(socks) {
				break
			}
			b := min(a+jsonChunk, len(socks))
			wg.Add(1)
			go func() {
				defer wg.Done()
				bufs[w], errs[w] = encodeSockets(bufs[w][:0], socks, a, b)
			}()
		}
		wg.Wait()
		for w := 0; w < workers; w++ {
			if errs[w] != nil {
				return errs[w]
			}
			if lo+w*jsonChunk < len(socks) {
				bw.Write(bufs[w])
			}
		}
	}
	return nil
}

// encodeSockets appends socks[a:b] to buf, each after a comma (but the
// array's first) and a line break.
func encodeSockets(buf []byte, socks []inspect.Socket, a, b int) ([]byte, error) {
	if want := (b - a) * 768; cap(buf) < want {
		buf = make([]byte, 0, want) // about a socket's line: one allocation, not a dozen
	}
	for j := a; j < b; j++ {
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n    "...)
		var err error
		if buf, err = appendSocket(buf, &socks[j]); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// podName is namespace/pod/container as people write it, "-" outside a pod.
func podName(id *pod.Identity) string {
	if id == nil || id.String() == "" {
		return "-"
	}
	return label.Clean(id.String())
}

// conntrackHeader is the CONNTRACK column's header, present only when the
// scan looked flows up in conntrack (--max-idle auto, --conntrack-netns).
func conntrackHeader(on bool) string {
	if !on {
		return ""
	}
	return "CONNTRACK\t"
}

// conntrackCell says how long the node's conntrack still holds the flow.
func conntrackCell(on bool, sk inspect.Socket) string {
	switch {
	case !on:
		return ""
	case sk.Conntrack != nil:
		return "forgotten in " + Seconds(sk.Conntrack.RemainingS) + "\t"
	case sk.Verdict == inspect.Dead:
		return "forgotten\t"
	}
	return "-\t"
}

// deadCount is ", N dead" when a NAT forgot flows, else nothing (the
// summary of a scan that did not look is unchanged).
func deadCount(sum inspect.Summary) string {
	if sum.Dead == 0 {
		return ""
	}
	return fmt.Sprintf(", %d dead", sum.Dead)
}
