#!/usr/bin/env bash
# The peer of kadiag's lab in scripts/bench/simulate.sh: the same topology
# (client — middlebox — server netns, two veth pairs, IPv4 and IPv6,
# masquerade, conntrack established timeout, loose=0, invalid → RST/drop)
# built with ip and nft, then torn down. Usage: simulate-lab.sh [SUFFIX]
set -euo pipefail
s=${1:-$$}
c=kbc$s m=kbm$s v=kbs$s
ip netns add "$c"
ip netns add "$m"
ip netns add "$v"
ip -n "$m" link add inside type veth peer name eth0 netns "$c"
ip -n "$m" link add outside type veth peer name eth0 netns "$v"
ip -n "$m" addr add 198.18.1.1/24 dev inside
ip -n "$m" addr add fd00:6b61:1::1/64 dev inside nodad
ip -n "$m" addr add 198.18.2.1/24 dev outside
ip -n "$m" addr add fd00:6b61:2::1/64 dev outside nodad
ip -n "$c" addr add 198.18.1.2/24 dev eth0
ip -n "$c" addr add fd00:6b61:1::2/64 dev eth0 nodad
ip -n "$v" addr add 198.18.2.2/24 dev eth0
ip -n "$v" addr add fd00:6b61:2::2/64 dev eth0 nodad
for ns in "$c" "$m" "$v"; do ip -n "$ns" link set lo up; done
ip -n "$m" link set inside up
ip -n "$m" link set outside up
ip -n "$c" link set eth0 up
ip -n "$v" link set eth0 up
ip -n "$c" route add default via 198.18.1.1
ip -n "$c" -6 route add default via fd00:6b61:1::1
ip netns exec "$m" nft -f - <<'NFT'
table inet kadiag {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "inside" ct state invalid meta l4proto tcp reject with tcp reset
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
		oifname "outside" masquerade
	}
}
NFT
ip netns exec "$m" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
	net.netfilter.nf_conntrack_tcp_loose=0 net.netfilter.nf_conntrack_tcp_timeout_established=350
ip netns del "$c"
ip netns del "$m"
ip netns del "$v"
