#!/usr/bin/env bash
# Benchmark: kadiag capture --read against tshark -Y tcp.analysis.keep_alive
# on the same generated pcap (>= 1 GB of many flows with keepalive probes),
# in the same run. Prints both times, the speedup, packets per second and
# kadiag's peak RSS. Goals: >= 20x faster than tshark, RSS < 100 MB.
#
# The pcap is generated into $BENCH_DIR (default /tmp), never committed, and
# removed afterwards unless KEEP=1. SIZE_MB sets its size (default 1100).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BENCH_DIR:-/tmp}
size=${SIZE_MB:-1100}
work=$(mktemp -d "$dir/kadiag-bench-capture.XXXXXX")
pcap="$work/bench.pcap"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

command -v tshark >/dev/null || { echo "capture bench: tshark missing (make deps)" >&2; exit 1; }
CGO_ENABLED=0 go build -o "$work/kadiag" ./cmd/kadiag
go run ./capture/internal/pcapgen -o "$pcap" -size "$size"
cat "$pcap" > /dev/null # both readers start from the page cache

# measure CMD...: wall seconds and peak RSS (KiB) of the command, via
# getrusage(RUSAGE_CHILDREN); stdout goes to $work/out.
measure() {
	python3 - "$work/out" "$@" <<'PY'
import resource, subprocess, sys, time
out = open(sys.argv[1], "wb")
t = time.monotonic()
rc = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{wall:.3f} {rss} {rc}")
PY
}

read -r k_wall k_rss k_rc < <(measure "$work/kadiag" capture --read "$pcap" --max-idle 350s -o json)
cp "$work/out" "$work/kadiag.json"
read -r t_wall t_rss t_rc < <(measure tshark -n -r "$pcap" -Y tcp.analysis.keep_alive -T fields -e frame.number)
t_probes=$(wc -l < "$work/out")

python3 - "$work/kadiag.json" "$k_wall" "$k_rss" "$k_rc" "$t_wall" "$t_rss" "$t_probes" "$(stat -c %s "$pcap")" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
k_wall, k_rss, k_rc = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t_wall, t_rss, t_probes, size = float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
s = doc["summary"]
k_probes = sum(f["wireshark_keep_alives"] for f in doc["flows"])
pkts = s["packets"]
print(f"file:    {size/2**20:.0f} MiB, {pkts} packets, {s['flows']} flows")
print(f"kadiag:  {k_wall:.2f} s, {pkts/k_wall/1e6:.2f} Mpps, {size/2**20/k_wall:.0f} MiB/s, peak RSS {k_rss/1024:.1f} MiB, exit {k_rc}, {k_probes} keep-alives")
print(f"tshark:  {t_wall:.2f} s, {pkts/t_wall/1e3:.0f} kpps, peak RSS {t_rss/1024:.0f} MiB, {t_probes} keep-alives")
print(f"speedup: {t_wall/k_wall:.1f}x (goal >= 20x); kadiag RSS {k_rss/1024:.1f} MiB (goal < 100 MiB); same keep-alive count: {k_probes == t_probes}")
goals = t_wall / k_wall >= 20 and k_rss / 1024 < 100
print("goals: " + ("met" if goals else "MISSED"))
# A missed speed goal is a figure to report; different counts are a bug.
sys.exit(0 if k_probes == t_probes and k_rc in (0, 1) else 1)
PY
