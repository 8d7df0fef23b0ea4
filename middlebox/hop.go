package middlebox

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Hop is one middlebox in a path, as a lab builds it: its own conntrack
// table with its own idle timeout and behaviour after expiry.
type Hop struct {
	// Name is the preset's name, or the spec the hop was written as.
	Name  string
	Idle  time.Duration
	After AfterExpiry
	// NAT makes the hop masquerade the client's address; without it the
	// hop only tracks (and forgets) the flow.
	NAT bool
}

// Chain is a named path of middleboxes, client side first, as a real
// deployment puts them.
type Chain struct {
	Name string
	// Hops are preset names, client side first.
	Hops []string
	// Description says where such a path is found.
	Description string
}

// chains is the one table of named paths.
var chains = []Chain{
	{Name: "eks-nat", Hops: []string{"aws-ec2-conntrack", "aws-nat"},
		Description: "a pod on a Nitro v6 EKS node (the instance's connection tracking, 350 s, silent) calling out through a NAT gateway (350 s, RST)"},
	{Name: "eks-nlb", Hops: []string{"aws-nat", "aws-nlb"},
		Description: "a client behind a NAT gateway calling a service behind a Network Load Balancer (350 s each, RST)"},
}

// Chains returns every named chain, sorted by name.
func Chains() []Chain {
	out := append([]Chain(nil), chains...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrBadHop is returned (wrapped) by ParseHop and LookupChain.
var ErrBadHop = errors.New("bad hop")

// LookupChain returns the hops of a named chain.
func LookupChain(name string) ([]Hop, error) {
	for _, c := range chains {
		if c.Name != name {
			continue
		}
		var hops []Hop
		for _, n := range c.Hops {
			p, err := Lookup(n)
			if err != nil {
				return nil, err
			}
			hops = append(hops, p.Hop())
		}
		return hops, nil
	}
	var names []string
	for _, c := range Chains() {
		names = append(names, c.Name)
	}
	return nil, fmt.Errorf("%w: unknown chain %q (known: %s)", ErrBadHop, name, strings.Join(names, ", "))
}

// ParseHop reads one --hop: a preset name ("aws-nat"), a list of settings
// ("idle=8s,after=heal,nat=no"), or a preset with settings that override
// its own ("aws-nlb,idle=60s"). Without a preset, after defaults to reset
// and nat to yes (a NAT gateway); idle is required.
func ParseHop(spec string) (Hop, error) {
	spec = strings.TrimSpace(spec)
	h := Hop{After: Reset, NAT: true}
	idleSet := false
	for i, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			if i > 0 {
				return Hop{}, fmt.Errorf("%w %q: %q is neither a preset (first) nor key=value (use e.g. aws-nat or idle=350s,after=reset,nat=yes)", ErrBadHop, spec, f)
			}
			p, err := Lookup(f)
			if err != nil {
				return Hop{}, fmt.Errorf("%w %q: %w", ErrBadHop, spec, err)
			}
			h, idleSet = p.Hop(), true
			continue
		}
		switch strings.TrimSpace(k) {
		case "idle":
			d, err := ParseIdle(v)
			if err != nil {
				return Hop{}, fmt.Errorf("%w %q: idle: %w", ErrBadHop, spec, err)
			}
			h.Idle, idleSet = d, true
		case "after":
			switch a := AfterExpiry(strings.TrimSpace(v)); a {
			case Reset, Drop, Heal:
				h.After = a
			default:
				return Hop{}, fmt.Errorf("%w %q: after=%q (use reset, drop or heal)", ErrBadHop, spec, v)
			}
		case "nat":
			switch strings.TrimSpace(v) {
			case "yes", "true", "1":
				h.NAT = true
			case "no", "false", "0":
				h.NAT = false
			default:
				return Hop{}, fmt.Errorf("%w %q: nat=%q (use yes or no)", ErrBadHop, spec, v)
			}
		default:
			return Hop{}, fmt.Errorf("%w %q: unknown setting %q (use idle, after, nat)", ErrBadHop, spec, k)
		}
	}
	if !idleSet {
		return Hop{}, fmt.Errorf("%w %q: no idle (use a preset or idle=D)", ErrBadHop, spec)
	}
	if h.Name == "" || strings.Contains(spec, "=") {
		h.Name = spec
	}
	return h, nil
}
