# Sourced by the demo and benchmark scripts (never by the product, which
# builds its namespaces through netlink).

# veth_pair SRV CLI IF NET: network namespaces SRV and CLI joined by a veth
# pair, IF-s with NET.1/24 in SRV and IF-c with NET.2/24 in CLI, all up.
veth_pair() {
	local srv=$1 cli=$2 ifname=$3 net=$4
	ip netns add "$srv"
	ip netns add "$cli"
	ip link add "$ifname-s" type veth peer name "$ifname-c"
	ip link set "$ifname-s" netns "$srv"
	ip link set "$ifname-c" netns "$cli"
	ip -n "$srv" addr add "$net.1/24" dev "$ifname-s"
	ip -n "$cli" addr add "$net.2/24" dev "$ifname-c"
	for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
	ip -n "$srv" link set "$ifname-s" up
	ip -n "$cli" link set "$ifname-c" up
}

# veth_pair_cleanup SRV CLI PID...: kills the processes started in the
# namespaces, waits for them and deletes both namespaces (and so the veth).
veth_pair_cleanup() {
	local srv=$1 cli=$2
	shift 2
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
}
