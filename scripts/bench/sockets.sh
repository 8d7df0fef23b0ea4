#!/usr/bin/env bash
# Benchmark: kadiag sockets against ss over the same 54,000 established TCP
# connections, both ends in one test network namespace (3 client processes
# of 18,000 each and their 3 servers: the hard RLIMIT_NOFILE is 20,000 per
# process), so that ss in that namespace lists the same 108,000 sockets
# kadiag reads. Best of several runs each, measured in the same run; prints
# the socket counts and the ratios. Goals: `kadiag sockets --pid` x6 <=
# 1.0x `ss -tonie`; `kadiag sockets --all` (exact values, by BPF iterators
# where the kernel has BTF) <= 0.5x `ss -toni` and <= 0.05x `ss -tonie -p`
# (which, like kadiag, maps sockets to processes).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "sockets bench: needs root (network namespaces); skipped"
	exit 0
fi
per=${KADIAG_BENCH_PER:-18000}
runs=${KADIAG_BENCH_RUNS:-5}
bin=bin/kadiag
make -s build # always the code under test, never a stale binary
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
ip netns exec "$cli" sysctl -qw net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
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
servers=()
for i in 1 2 3; do
	port=$((9000 + i))
	# The servers listen on the client namespace's own address.
	ip netns exec "$cli" "$hold" serve "198.18.210.2:$port" > "$tmp/s$i" 2>&1 &
	pids+=($!)
	servers+=($!)
	waitready "$tmp/s$i" $!
	ip netns exec "$cli" "$hold" dial "198.18.210.2:$port" "$per" > "$tmp/c$i" 2>&1 &
	pids+=($!)
	clients+=($!)
done
for i in 1 2 3; do waitready "$tmp/c$i" "${clients[$((i - 1))]}"; done
total=$(ip netns exec "$cli" ss -Htn state established | wc -l)
echo "sockets bench: $total established TCP sockets ($((total / 2)) connections, both ends) in one netns, 3 client and 3 server processes"
holders=("${clients[@]}" "${servers[@]}")
pidflags=()
for p in "${holders[@]}"; do pidflags+=(--pid "$p"); done

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
# Check once that kadiag sees every connection with exact options, and by
# which path (--explain-source).
"$bin" sockets "${pidflags[@]}" --explain-source -o json > "$tmp/out.json" 2> "$tmp/explain" || [ $? -le 1 ]
seen=$(grep -Eo '"source": *"(bpf|getsockopt)"' "$tmp/out.json" | wc -l)
bpf=$(grep -Eo '"source": *"bpf"' "$tmp/out.json" | wc -l)
echo "sockets bench: kadiag reported $seen sockets with exact values ($bpf read by BPF iterators)"
grep -o 'note: source: [^;]*' "$tmp/explain" | head -1 | sed 's/^/sockets bench: /'

"$bin" sockets --all -o json 2> /dev/null > "$tmp/all.json" || [ $? -le 1 ]
echo "sockets bench: kadiag sockets --all reported $(grep -c '"fd":' "$tmp/all.json") sockets (every process on the host); ss -tan in the netns lists $(ip netns exec "$cli" ss -Htan | wc -l)"
k=$(best "$bin" sockets "${pidflags[@]}" -o json)
ka=$(best "$bin" sockets --all -o json)
s=$(best ip netns exec "$cli" ss -tonie)
s2=$(best ip netns exec "$cli" ss -toni)
runs_p=${KADIAG_BENCH_RUNS_P:-3} # ss -p reads every process's /proc/PID/fd: slow
s3=$(runs=$runs_p best ip netns exec "$cli" ss -tonie -p)
awk -v k="$k" -v ka="$ka" -v s="$s" -v s2="$s2" -v s3="$s3" -v r="$runs" -v rp="$runs_p" 'BEGIN {
	printf "kadiag sockets --pid x6 -o json: %.1f ms (best of %d)\n", k / 1000, r
	printf "kadiag sockets --all -o json:    %.1f ms (best of %d; every process on the host)\n", ka / 1000, r
	printf "ss -tonie in the netns:          %.1f ms (best of %d)\n", s / 1000, r
	printf "ss -toni  in the netns:          %.1f ms (best of %d)\n", s2 / 1000, r
	printf "ss -tonie -p in the netns:       %.1f ms (best of %d)\n", s3 / 1000, rp
	printf "ratio kadiag --pid x6 / ss -tonie: %.2fx (goal <= 1.0x); / ss -toni: %.2fx\n", k / s, k / s2
	printf "ratio kadiag --all / ss -toni: %.2fx (goal <= 0.5x); / ss -tonie -p: %.3fx (goal <= 0.05x)\n", ka / s2, ka / s3
}'
