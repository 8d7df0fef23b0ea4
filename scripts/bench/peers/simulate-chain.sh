#!/usr/bin/env bash
# The peer of kadiag's 3-hop lab in scripts/bench/simulate.sh (kadiag
# simulate --bench-labs N --hop aws-ec2-conntrack --hop aws-nat --hop aws-nlb):
# the same topology built with ip and nft, then torn down. client — hop1 —
# hop2 — hop3 — server, four veth pairs, IPv4 and IPv6, routes both ways, in
# every hop an nft table (invalid → drop, or RST for the hops that reset;
# masquerade for the NAT hop), conntrack established timeout and loose=0.
# Not a benchmark by itself. Usage: simulate-chain.sh [SUFFIX]
set -euo pipefail
s=${1:-$$}
c=kcc$s h1=kc1$s h2=kc2$s h3=kc3$s v=kcs$s
for ns in "$c" "$h1" "$h2" "$h3" "$v"; do ip netns add "$ns"; done
# link 0: client eth0 .2 — hop1 inside .1; links 1, 2: hop outside .1 — next
# hop inside .2 (198.18.11/12.0/24); link 3: hop3 outside .1 — server eth0 .2.
ip -n "$h1" link add inside type veth peer name eth0 netns "$c"
ip -n "$h2" link add inside type veth peer name outside netns "$h1"
ip -n "$h3" link add inside type veth peer name outside netns "$h2"
ip -n "$h3" link add outside type veth peer name eth0 netns "$v"
ip -n "$c" addr add 198.18.1.2/24 dev eth0
ip -n "$c" addr add fd00:6b61:1::2/64 dev eth0 nodad
ip -n "$h1" addr add 198.18.1.1/24 dev inside
ip -n "$h1" addr add fd00:6b61:1::1/64 dev inside nodad
ip -n "$h1" addr add 198.18.11.1/24 dev outside
ip -n "$h1" addr add fd00:6b61:11::1/64 dev outside nodad
ip -n "$h2" addr add 198.18.11.2/24 dev inside
ip -n "$h2" addr add fd00:6b61:11::2/64 dev inside nodad
ip -n "$h2" addr add 198.18.12.1/24 dev outside
ip -n "$h2" addr add fd00:6b61:12::1/64 dev outside nodad
ip -n "$h3" addr add 198.18.12.2/24 dev inside
ip -n "$h3" addr add fd00:6b61:12::2/64 dev inside nodad
ip -n "$h3" addr add 198.18.2.1/24 dev outside
ip -n "$h3" addr add fd00:6b61:2::1/64 dev outside nodad
ip -n "$v" addr add 198.18.2.2/24 dev eth0
ip -n "$v" addr add fd00:6b61:2::2/64 dev eth0 nodad
for ns in "$c" "$v"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
for ns in "$h1" "$h2" "$h3"; do
	ip -n "$ns" link set lo up
	ip -n "$ns" link set inside up
	ip -n "$ns" link set outside up
done
ip -n "$c" route add default via 198.18.1.1
ip -n "$c" -6 route add default via fd00:6b61:1::1
ip -n "$h1" route add default via 198.18.11.2
ip -n "$h1" -6 route add default via fd00:6b61:11::2
ip -n "$h2" route add default via 198.18.12.2
ip -n "$h2" -6 route add default via fd00:6b61:12::2
ip -n "$h2" route add 198.18.1.0/24 via 198.18.11.1
ip -n "$h2" -6 route add fd00:6b61:1::/64 via fd00:6b61:11::1
ip -n "$h3" route add default via 198.18.2.2
ip -n "$h3" -6 route add default via fd00:6b61:2::2
ip -n "$h3" route add 198.18.1.0/24 via 198.18.12.1
ip -n "$h3" route add 198.18.11.0/24 via 198.18.12.1
ip -n "$h3" -6 route add fd00:6b61:1::/64 via fd00:6b61:12::1
ip -n "$h3" -6 route add fd00:6b61:11::/64 via fd00:6b61:12::1
for net in 198.18.1.0/24 198.18.11.0/24 198.18.12.0/24; do ip -n "$v" route add "$net" via 198.18.2.1; done
for net in fd00:6b61:1::/64 fd00:6b61:11::/64 fd00:6b61:12::/64; do ip -n "$v" -6 route add "$net" via fd00:6b61:2::1; done
hop() { # NS RESET(0|1) NAT(0|1)
	local reset="" nat=""
	[ "$2" = 1 ] && reset='iifname "inside" ct state invalid meta l4proto tcp reject with tcp reset'
	[ "$3" = 1 ] && nat='oifname "outside" masquerade'
	ip netns exec "$1" nft -f - <<NFT
table inet kadiag {
	chain forward {
		type filter hook forward priority filter; policy accept;
		$reset
		ct state invalid drop
	}
	chain input {
		type filter hook input priority filter; policy accept;
		meta l4proto ipv6-icmp accept
		ct state invalid drop
		iifname "outside" ct state new drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		$nat
	}
}
NFT
	ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.netfilter.nf_conntrack_tcp_loose=0 net.netfilter.nf_conntrack_tcp_timeout_established=350
}
hop "$h1" 0 0 # aws-ec2-conntrack: silent, no NAT
hop "$h2" 1 1 # aws-nat: RST, NAT
hop "$h3" 1 0 # aws-nlb: RST, no NAT
for ns in "$c" "$h1" "$h2" "$h3" "$v"; do ip netns del "$ns"; done
