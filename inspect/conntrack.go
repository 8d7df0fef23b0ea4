package inspect

// Dead is the verdict of an ESTABLISHED socket whose flow a NAT on this
// node has already forgotten (its conntrack entry is gone): the
// application waits on a connection that no longer exists. Packages that
// can see the NAT (nodebox) set it after the scan; it fails a check.
const Dead Verdict = "dead"

// Conntrack is the entry of a socket's flow in a conntrack table of this
// node: the namespace that holds it and how long it stays unless a packet
// refreshes it.
type Conntrack struct {
	// Netns names the namespace: the --conntrack-netns path, or
	// "net:[inode]".
	Netns string `json:"netns"`
	// RemainingS is the entry's remaining time in seconds ("forgotten in
	// 42s" unless a packet passes before).
	RemainingS int `json:"remaining_s"`
}

// Recount recomputes the summary from the sockets' verdicts, after a
// caller judged them again (nodebox's --max-idle auto, verdict dead).
func (r *Report) Recount() {
	r.Summary = Summary{}
	for i := range r.Processes {
		for j := range r.Processes[i].Sockets {
			r.Summary.count(r.Processes[i].Sockets[j].Verdict)
		}
	}
}
