// Package middlebox describes the stateful boxes between a client and a server
// (NAT gateways, load balancers, conntrack tables) that forget a TCP flow after
// it has been idle for a while, and parses the idle limits users give kadiag.
package middlebox

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AfterExpiry is what a middlebox does with a packet of a flow it has forgotten.
type AfterExpiry string

const (
	// Reset answers the inside host's next packet with a TCP RST and drops
	// packets from the outside peer (AWS NAT Gateway, AWS NLB).
	Reset AfterExpiry = "reset"
	// Drop silently drops every later packet of the flow (GCP, Azure, IPVS).
	Drop AfterExpiry = "drop"
	// Heal re-creates the flow from any later packet, as Linux conntrack does
	// with nf_conntrack_tcp_loose=1.
	Heal AfterExpiry = "heal"
)

// Preset is a named real-world middlebox with its idle timeout.
type Preset struct {
	Name  string
	Idle  time.Duration
	After AfterExpiry
	// NAT says whether the box rewrites the client's address (a NAT
	// gateway) or only tracks the flow (a firewall, a load balancer that
	// keeps the client's address, an instance's connection tracking).
	NAT    bool
	Source string // where the numbers come from
}

// Hop returns the preset as one hop of a lab's chain.
func (p Preset) Hop() Hop { return Hop{Name: p.Name, Idle: p.Idle, After: p.After, NAT: p.NAT} }

// DefaultIdle is the idle timeout kadiag checks against when none is given:
// the AWS NAT Gateway's fixed 350 s, the most common culprit.
const DefaultIdle = 350 * time.Second

// presets is the one table of real-world middleboxes; docs/middleboxes.md
// holds the same rows with their sources (a test keeps them in step).
var presets = []Preset{
	{Name: "aws-nat", Idle: 350 * time.Second, After: Reset, NAT: true, Source: "AWS VPC docs, NAT gateway troubleshooting"},
	{Name: "aws-nlb", Idle: 350 * time.Second, After: Reset, Source: "AWS ELB docs, update-idle-timeout"},
	{Name: "aws-gwlb", Idle: 350 * time.Second, After: Drop, Source: "AWS Gateway Load Balancer docs, flow idle timeout"},
	{Name: "aws-network-firewall", Idle: 350 * time.Second, After: Drop, Source: "AWS Network Firewall docs, TCP idle timeout"},
	{Name: "aws-ec2-conntrack", Idle: 350 * time.Second, After: Drop, Source: "EC2 docs, connection tracking timeouts (Nitro v6 default; 60–432000 s)"},
	{Name: "azure-lb", Idle: 240 * time.Second, After: Drop, Source: "Azure Load Balancer docs"},
	{Name: "azure-nat", Idle: 240 * time.Second, After: Drop, NAT: true, Source: "Azure NAT Gateway docs"},
	{Name: "gcp-nat", Idle: 1200 * time.Second, After: Drop, NAT: true, Source: "GCP Cloud NAT docs"},
	{Name: "swarm-ipvs", Idle: 900 * time.Second, After: Drop, NAT: true, Source: "moby#31208"},
	{Name: "kube-proxy", Idle: 86400 * time.Second, After: Heal, NAT: true, Source: "kube-proxy --conntrack-tcp-timeout-established"},
	{Name: "linux-default", Idle: 432000 * time.Second, After: Heal, NAT: true, Source: "kernel nf_conntrack-sysctl docs"},
}

// Presets returns every known preset, sorted by name.
func Presets() []Preset {
	out := append([]Preset(nil), presets...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrUnknownPreset is returned (wrapped) by Lookup for a name that is not a preset.
var ErrUnknownPreset = errors.New("unknown middlebox preset")

// Lookup returns the preset with the given name.
func Lookup(name string) (Preset, error) {
	for _, p := range presets {
		if p.Name == name {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownPreset, name, presetNames())
}

func presetNames() string {
	var names []string
	for _, p := range Presets() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// ErrBadDuration is returned (wrapped) when a duration cannot be parsed.
var ErrBadDuration = errors.New("bad duration")

// ParseDuration reads a duration the way users write them: Go syntax
// ("350s", "5m", "1h30m") or a bare number of seconds ("350"). It rejects
// negative values.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty (use e.g. 350s, 5m or 350)", ErrBadDuration)
	}
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else {
		var perr error
		d, perr = time.ParseDuration(s)
		if perr != nil {
			return 0, fmt.Errorf("%w %q (use e.g. 350s, 5m or 350)", ErrBadDuration, s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("%w %q: negative", ErrBadDuration, s)
	}
	return d, nil
}

// ParseIdle reads an idle limit: a duration (see ParseDuration), a preset
// name such as "aws-nat", or @FILE, the JSON of a `kadiag path`
// measurement (ReadMeasured). A zero limit is rejected.
func ParseIdle(s string) (time.Duration, error) {
	if file, ok := measuredRef(s); ok {
		return ReadMeasured(file)
	}
	if p, err := Lookup(strings.TrimSpace(s)); err == nil {
		return p.Idle, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w, or a preset: %s", err, presetNames())
	}
	if d == 0 {
		return 0, fmt.Errorf("%w %q: the idle limit must be positive", ErrBadDuration, s)
	}
	return d, nil
}
