package nodebox

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kadiag/kadiag/inspect"
	"github.com/kadiag/kadiag/middlebox"
)

// Options say what to look at.
type Options struct {
	// MaxIdle is --max-idle; with Auto every socket is judged against the
	// smallest timeout visible on its path.
	MaxIdle MaxIdle
	// ConntrackNetns are namespaces that NAT the flows
	// (--conntrack-netns, repeatable): a flow missing from one of them
	// after its timeout is dead.
	ConntrackNetns []string
	// NodeNetns is the node's namespace; empty means /proc/1/ns/net.
	NodeNetns string
}

// View is what the node shows of its middleboxes, read once per scan.
type View struct {
	o        Options
	declared []*Namespace
	node     *Namespace
	self     *Namespace
	byIno    map[uint64]*Namespace
	notes    []string
}

// Read opens the declared namespaces, the node's and kadiag's own. A
// declared namespace that cannot be read is an error (the user named
// it); the node's or kadiag's own only costs a note.
func Read(o Options) (*View, error) {
	v := &View{o: o, byIno: map[uint64]*Namespace{}}
	for _, p := range o.ConntrackNetns {
		n, err := open(p, Declared)
		if err != nil {
			return nil, fmt.Errorf("--conntrack-netns %s: %w", p, err)
		}
		if n.Established == 0 {
			return nil, fmt.Errorf("--conntrack-netns %s: %w", p, ErrNoConntrack)
		}
		v.declared = append(v.declared, n)
		v.byIno[n.Ino] = n
	}
	node := o.NodeNetns
	if node == "" {
		node = "/proc/1/ns/net"
	}
	for _, s := range []struct {
		path string
		role Role
		dst  **Namespace
	}{{node, Node, &v.node}, {"/proc/thread-self/ns/net", Self, &v.self}} {
		n, err := v.get(s.path, s.role)
		if err != nil {
			v.notes = append(v.notes, fmt.Sprintf("%s namespace: %v", s.role, err))
			continue
		}
		*s.dst = n
	}
	return v, nil
}

// ErrNoConntrack means a declared namespace has no conntrack at all.
var ErrNoConntrack = errors.New("no conntrack in that namespace (nf_conntrack not loaded there: nothing there can forget a flow)")

// get returns the namespace at path, read once per View: the processes
// of a namespace share one conntrack dump.
func (v *View) get(path string, role Role) (*Namespace, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		if seen, ok := v.byIno[st.Ino]; ok {
			return seen, nil
		}
	}
	n, err := open(path, role)
	if err != nil {
		return nil, err
	}
	if seen, ok := v.byIno[n.Ino]; ok {
		return seen, nil
	}
	v.byIno[n.Ino] = n
	return n, nil
}

// Notes are the problems met while reading.
func (v *View) Notes() []string { return v.notes }

// label names a namespace in a reason.
func (n *Namespace) label() string {
	if n.Role == Declared {
		return "at " + n.Name
	}
	return "in " + n.Name + " (" + string(n.Role) + ")"
}

// box is one timeout that applies to a flow.
type box struct {
	idle time.Duration
	name string
}

// path lists the namespaces a socket of a process in own may cross:
// declared ones first, then its own, the node's and kadiag's, each once.
func (v *View) path(own *Namespace) []*Namespace {
	var out []*Namespace
	seen := map[uint64]bool{}
	for _, n := range append(append([]*Namespace{}, v.declared...), own, v.node, v.self) {
		if n != nil && !seen[n.Ino] {
			seen[n.Ino] = true
			out = append(out, n)
		}
	}
	return out
}

// limit is the smallest timeout among the boxes on the path, with the
// box's name; with nothing visible and nothing declared, the default
// middlebox (AWS NAT Gateway), said so.
func (v *View) limit(path []*Namespace) box {
	var b box
	take := func(d time.Duration, name string) {
		if d > 0 && (b.idle == 0 || d < b.idle) {
			b = box{d, name}
		}
	}
	for _, n := range path {
		if n.Established > 0 && (n.Tracking || n.Role == Declared) {
			take(n.Established, "conntrack "+n.label())
		}
		take(n.IPVS, "IPVS "+n.label())
	}
	if m := v.o.MaxIdle; m.Declared > 0 {
		take(m.Declared, "the declared middlebox ("+m.DeclaredName+")")
	}
	if b.idle == 0 {
		b = box{middlebox.DefaultIdle, "no middlebox visible on this node; the default middlebox (AWS NAT Gateway)"}
	}
	return b
}

// Apply judges the report's sockets again with what the node shows: the
// smallest timeout on each socket's path (with MaxIdle.Auto, the reason
// naming the box), each flow's conntrack entry, and verdict dead for an
// ESTABLISHED socket whose declared NAT has no entry although its timeout
// has passed. It recounts the summary.
func (v *View) Apply(r *inspect.Report) {
	smallest := time.Duration(0)
	for i := range r.Processes {
		p := &r.Processes[i]
		var own *Namespace
		if p.PID > 0 {
			n, err := v.get("/proc/"+strconv.Itoa(p.PID)+"/ns/net", Own)
			if err != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("pid %d: its namespace's conntrack cannot be read: %v", p.PID, err))
			} else {
				own = n
			}
		}
		path := v.path(own)
		b := v.limit(path)
		if v.o.MaxIdle.Auto && (smallest == 0 || b.idle < smallest) {
			smallest = b.idle
		}
		for j := range p.Sockets {
			v.judge(&p.Sockets[j], path, b)
		}
	}
	if v.o.MaxIdle.Auto && smallest > 0 {
		r.MaxIdleS = int(smallest / time.Second)
	}
	r.Notes = append(r.Notes, v.notes...)
	r.Recount()
}

func (v *View) judge(sk *inspect.Socket, path []*Namespace, b box) {
	if v.o.MaxIdle.Auto {
		sk.Verdict, sk.Reason = inspect.Judge(sk, b.idle)
		if sk.Verdict == inspect.AtRisk {
			sk.Reason = nameBox(sk.Reason, b)
		}
	}
	if sk.State == "LISTEN" || sk.Verdict == inspect.Local {
		return
	}
	local, err1 := netip.ParseAddrPort(sk.Local)
	remote, err2 := netip.ParseAddrPort(sk.Remote)
	if err1 != nil || err2 != nil {
		return
	}
	local, remote = netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	for _, n := range path {
		if e, ok := n.lookup(local, remote); ok {
			sk.Conntrack = &inspect.Conntrack{Netns: n.Name, RemainingS: int(e.remaining / time.Second)}
			break
		}
	}
	if sk.State != "ESTABLISHED" {
		return
	}
	idle := time.Duration(min(sk.LastDataRecvMs, sk.LastAckRecvMs)) * time.Millisecond
	for _, n := range path {
		if n.Role != Declared {
			continue
		}
		if _, ok := n.lookup(local, remote); ok || idle < n.Established {
			// Held, or received from within the timeout: either the entry is
			// there or the flow does not pass this NAT at all.
			continue
		}
		sk.Verdict = inspect.Dead
		sk.Reason = fmt.Sprintf("the NAT at %s forgot this flow: no conntrack entry, and nothing received for %ds, past its %ds timeout", n.Name, int(idle/time.Second), int(n.Established/time.Second))
		return
	}
}

// nameBox puts the box's name where Judge says "middlebox".
func nameBox(reason string, b box) string {
	secs := int(b.idle / time.Second)
	if before, _, ok := strings.Cut(reason, ", middlebox forgets after"); ok {
		return fmt.Sprintf("%s; %s forgets after %ds", before, b.name, secs)
	}
	return fmt.Sprintf("%s; %s forgets after %ds", reason, b.name, secs)
}
