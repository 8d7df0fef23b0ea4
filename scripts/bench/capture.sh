#!/usr/bin/env bash
# Benchmark: kadiag capture --read against tshark -Y tcp.analysis.keep_alive
# on the same generated pcaps, in the same run, in two shapes:
#   small: 1,000,000 frames of 60-250 bytes over 2,000 flows (handshakes,
#          request/response rounds with ACKs, keepalive probes and their
#          ACKs): goals >= 5 Mpps and >= 60x tshark;
#   large: >= 1 GB of full-size data segments over many flows with
#          keepalive probes: goals >= 40x tshark, kadiag's peak RSS < 50 MB.
# Prints both times, the speedup, packets per second and peak RSS per shape.
# kadiag runs RUNS times (default 3) and its median counts; tshark once.
# The keep-alive counts of both must be equal (else exit 1); a missed speed
# goal is a figure to report, not a failure.
#
# The pcaps are generated into $BENCH_DIR (default /tmp), never committed, and
# removed afterwards unless KEEP=1. SIZE_MB sets the large one's size (default
# 1100), PACKETS and FLOWS the small one's (default 1000000, 2000); SHAPES
# picks shapes (default "small large").
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BENCH_DIR:-/tmp}
size=${SIZE_MB:-1100}
packets=${PACKETS:-1000000}
flows=${FLOWS:-2000}
runs=${RUNS:-3}
work=$(mktemp -d "$dir/kadiag-bench-capture.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

command -v tshark >/dev/null || { echo "capture bench: tshark missing (make deps)" >&2; exit 1; }
CGO_ENABLED=0 go build -o "$work/kadiag" ./cmd/kadiag
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (figures are noisy on a busy machine; the ratios are measured in the same run)"

# measure OUT CMD...: wall seconds, peak RSS (KiB), exit code and CPU seconds
# (user + system) of CMD, via getrusage(RUSAGE_CHILDREN); stdout goes to OUT.
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
out = open(sys.argv[1], "wb")
t = time.monotonic()
rc = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_maxrss} {rc} {ru.ru_utime + ru.ru_stime:.3f}")
PY
}

status=0
for shape in ${SHAPES:-small large}; do
	pcap="$work/$shape.pcap"
	case $shape in
	small) go run ./capture/internal/pcapgen -shape small -packets "$packets" -flows "$flows" -o "$pcap" ;;
	large) go run ./capture/internal/pcapgen -shape large -size "$size" -o "$pcap" ;;
	*) echo "capture bench: unknown shape $shape" >&2; exit 2 ;;
	esac
	cat "$pcap" > /dev/null # both readers start from the page cache
	k_runs=()
	for _ in $(seq "$runs"); do
		k_runs+=("$(measure "$work/kadiag.json" "$work/kadiag" capture --read "$pcap" --max-idle 350s -o json)")
	done
	read -r t_wall t_rss t_rc t_cpu < <(measure "$work/tshark.out" tshark -n -r "$pcap" -Y tcp.analysis.keep_alive -T fields -e frame.number)
	t_probes=$(wc -l < "$work/tshark.out")
	python3 - "$shape" "$work/kadiag.json" "$t_wall" "$t_rss" "$t_probes" "$(stat -c %s "$pcap")" "$t_cpu" "${k_runs[@]}" <<'PY' || status=1
import json, statistics, sys
shape, doc = sys.argv[1], json.load(open(sys.argv[2]))
t_wall, t_rss, t_probes, size, t_cpu = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
runs = [r.split() for r in sys.argv[8:]]
walls = [float(r[0]) for r in runs]
k_cpu = statistics.median(float(r[3]) for r in runs)
k_wall, k_rss = statistics.median(walls), max(int(r[1]) for r in runs)
k_rc = max(int(r[2]) for r in runs)
s = doc["summary"]
k_probes = sum(f["wireshark_keep_alives"] for f in doc["flows"])
pkts = s["packets"]
mpps = pkts / k_wall / 1e6
speedup = t_wall / k_wall
print(f"[{shape}] file:    {size/2**20:.0f} MiB, {pkts} packets, {s['flows']} flows")
print(f"[{shape}] kadiag:  median {k_wall:.2f} s of {', '.join(f'{w:.2f}' for w in walls)}: {mpps:.2f} Mpps, {size/2**20/k_wall:.0f} MiB/s, peak RSS {k_rss/1024:.1f} MiB, {k_probes} keep-alives; CPU {k_cpu:.2f} s ({pkts/k_cpu/1e6:.2f} Mpps per CPU second)")
print(f"[{shape}] tshark:  {t_wall:.2f} s, {pkts/t_wall/1e3:.0f} kpps, peak RSS {t_rss/1024:.0f} MiB, {t_probes} keep-alives; CPU {t_cpu:.2f} s (ratio of CPU seconds {t_cpu/k_cpu:.0f}x)")
if shape == "small":
    goals = mpps >= 5 and speedup >= 60
    goal_text = f"goals >= 5 Mpps, >= 60x: {mpps:.2f} Mpps"
else:
    goals = speedup >= 40 and k_rss / 1024 < 50
    goal_text = f"goals >= 40x, RSS < 50 MiB: RSS {k_rss/1024:.1f} MiB"
print(f"[{shape}] speedup: {speedup:.1f}x; {goal_text}; same keep-alive count: {k_probes == t_probes}")
print(f"[{shape}] goals: " + ("met" if goals else "MISSED"))
# A missed speed goal is a figure to report; different counts are a bug.
sys.exit(0 if k_probes == t_probes and k_rc in (0, 1) else 1)
PY
	rm -f "$pcap"
done
exit $status
