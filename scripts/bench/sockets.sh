#!/usr/bin/env bash
# Benchmark: kadiag sockets against ss -tonie over the same 54,000 established
# TCP connections in one test network namespace (3 client processes of 18,000
# each: the hard RLIMIT_NOFILE is 20,000 per process). Best of several runs
# each, measured in the same run; prints the ratio (goal: <= 1.0x ss).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "sockets bench: needs root (network namespaces); skipped"
	exit 0
fi
per=${KADIAG_BENCH_PER:-18000}
runs=${KADIAG_BENCH_RUNS:-5}
bin=bin/kadiag
[ -x "$bin" ] || make -s build
tmp=$(mktemp -d)
hold=$tmp/sockhold
CGO_ENABLED=0 go build -o "$hold" ./scripts/bench/sockhold
srv=kadiag-bench-srv-$$ cli=kadiag-bench-cli-$$
pids=()
. scripts/lib/veth-pair.sh
cleanup() {
	veth_pair_cleanup "$srv" "$cli" "${pids[@]}"
	rm -rf "$tmp"
}
trap cleanup EXIT
veth_pair "$srv" "$cli" kbench 198.18.210
for ns in "$srv" "$cli"; do
	ip netns exec "$ns" sysctl -qw net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
done
ip netns exec "$cli" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"

waitready() { # file pid
	for _ in $(seq 600); do
		grep -q ready "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || { cat "$1" >&2; return 1; }
		sleep 0.1
	done
	echo "sockets bench: $1 not ready" >&2
	return 1
}

clients=()
for i in 1 2 3; do
	port=$((9000 + i))
	ip netns exec "$srv" "$hold" serve "198.18.210.1:$port" > "$tmp/s$i" 2>&1 &
	pids+=($!)
	waitready "$tmp/s$i" $!
	ip netns exec "$cli" "$hold" dial "198.18.210.1:$port" "$per" > "$tmp/c$i" 2>&1 &
	pids+=($!)
	clients+=($!)
done
for i in 1 2 3; do waitready "$tmp/c$i" "${clients[$((i - 1))]}"; done
total=$(ip netns exec "$cli" ss -Htn state established | wc -l)
echo "sockets bench: $total established connections in one netns, 3 client processes"

now() { date +%s%N; }
best() { # command... ; prints the best wall time in ms over $runs runs
	local b=0 t0 t1 d
	for _ in $(seq "$runs"); do
		t0=$(now)
		"$@" > /dev/null 2>&1 || [ $? -le 1 ]
		t1=$(now)
		d=$(((t1 - t0) / 1000))
		if [ "$b" = 0 ] || [ "$d" -lt "$b" ]; then b=$d; fi
	done
	echo "$b"
}
# Check once that kadiag sees every connection with exact options.
"$bin" sockets --pid "${clients[0]}" --pid "${clients[1]}" --pid "${clients[2]}" -o json > "$tmp/out.json" || [ $? -le 1 ]
seen=$(grep -o '"source": *"getsockopt"' "$tmp/out.json" | wc -l)
echo "sockets bench: kadiag reported $seen sockets with exact (getsockopt) values"

k=$(best "$bin" sockets --pid "${clients[0]}" --pid "${clients[1]}" --pid "${clients[2]}" -o json)
s=$(best ip netns exec "$cli" ss -tonie)
s2=$(best ip netns exec "$cli" ss -toni)
awk -v k="$k" -v s="$s" -v s2="$s2" -v r="$runs" 'BEGIN {
	printf "kadiag sockets --pid x3 -o json: %.1f ms (best of %d)\n", k / 1000, r
	printf "ss -tonie in the netns:          %.1f ms (best of %d)\n", s / 1000, r
	printf "ss -toni  in the netns:          %.1f ms (best of %d)\n", s2 / 1000, r
	printf "ratio kadiag / ss -tonie: %.2fx (goal <= 1.0x); kadiag / ss -toni: %.2fx\n", k / s, k / s2
}'
