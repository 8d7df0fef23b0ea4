package middlebox

import (
	"errors"
	"testing"
	"time"
)

func TestParseHop(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Hop
		err  bool
	}{
		{"aws-nat", Hop{Name: "aws-nat", Idle: 350 * time.Second, After: Reset, NAT: true}, false},
		{"aws-ec2-conntrack", Hop{Name: "aws-ec2-conntrack", Idle: 350 * time.Second, After: Drop}, false},
		{"kube-proxy", Hop{Name: "kube-proxy", Idle: 86400 * time.Second, After: Heal, NAT: true}, false},
		{"idle=8s,after=heal", Hop{Name: "idle=8s,after=heal", Idle: 8 * time.Second, After: Heal, NAT: true}, false},
		{" idle=4s, after=drop, nat=no ", Hop{Name: "idle=4s, after=drop, nat=no", Idle: 4 * time.Second, After: Drop}, false},
		{"idle=gcp-nat", Hop{Name: "idle=gcp-nat", Idle: 1200 * time.Second, After: Reset, NAT: true}, false},
		{"aws-nlb,idle=60s", Hop{Name: "aws-nlb,idle=60s", Idle: 60 * time.Second, After: Reset}, false},
		{"aws-nlb,nat=yes", Hop{Name: "aws-nlb,nat=yes", Idle: 350 * time.Second, After: Reset, NAT: true}, false},
		{"", Hop{}, true},
		{"after=drop", Hop{}, true},
		{"idle=0", Hop{}, true},
		{"idle=soon", Hop{}, true},
		{"idle=5s,after=maybe", Hop{}, true},
		{"idle=5s,nat=perhaps", Hop{}, true},
		{"idle=5s,colour=red", Hop{}, true},
		{"idle=5s,aws-nat", Hop{}, true},
		{"aws-natt", Hop{}, true},
	} {
		got, err := ParseHop(tt.in)
		if tt.err {
			if !errors.Is(err, ErrBadHop) {
				t.Errorf("ParseHop(%q) = %+v, %v; want ErrBadHop", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseHop(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestChains(t *testing.T) {
	for _, c := range Chains() {
		hops, err := LookupChain(c.Name)
		if err != nil || len(hops) != len(c.Hops) || len(hops) < 2 {
			t.Errorf("chain %s: %+v, %v", c.Name, hops, err)
		}
	}
	hops, err := LookupChain("eks-nat")
	if err != nil || hops[0].Name != "aws-ec2-conntrack" || hops[0].NAT || hops[0].After != Drop || hops[1].Name != "aws-nat" || !hops[1].NAT {
		t.Errorf("eks-nat: %+v, %v: want the instance's conntrack (silent, no NAT), then the NAT gateway", hops, err)
	}
	hops, err = LookupChain("eks-nlb")
	if err != nil || hops[0].Name != "aws-nat" || hops[1].Name != "aws-nlb" {
		t.Errorf("eks-nlb: %+v, %v: want the NAT gateway on the client side, the NLB before the server", hops, err)
	}
	if _, err := LookupChain("gke-nat"); !errors.Is(err, ErrBadHop) {
		t.Errorf("unknown chain: %v", err)
	}
}
