#!/usr/bin/env bash
# Benchmark: what reports cost on a large capture. The same generated pcap is
# read by main's kadiag (the peer: no timeline hooks in capture), by main with
# this tree's capture package (the hooks alone, timelines off), and by this
# tree's kadiag with -o json, -o html and -o markdown (timelines recorded and
# drawn), interleaved over ROUNDS rounds; prints medians, ratios against the
# peer and peak RSS.
# SIZE_MB sets the pcap's size (default 300); it lives in $BENCH_DIR (/tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BENCH_DIR:-/tmp}
size=${SIZE_MB:-300}
rounds=${ROUNDS:-3}
work=$(mktemp -d "$dir/kadiag-bench-reports.XXXXXX")
trap 'rm -rf "$work"' EXIT

CGO_ENABLED=0 go build -o "$work/kadiag" ./cmd/kadiag
if git rev-parse --verify -q main >/dev/null; then
	mkdir "$work/main"
	git archive main | tar -x -C "$work/main"
	(cd "$work/main" && CGO_ENABLED=0 go build -o "$work/kadiag-main" ./cmd/kadiag)
	cp capture/*.go "$work/main/capture/"
	(cd "$work/main" && CGO_ENABLED=0 go build -o "$work/kadiag-main-hooks" ./cmd/kadiag)
else
	echo "reports bench: no main branch to compare with; the peer is this tree's -o json" >&2
	cp "$work/kadiag" "$work/kadiag-main"
	cp "$work/kadiag" "$work/kadiag-main-hooks"
fi
go run ./capture/internal/pcapgen -o "$work/bench.pcap" -size "$size" >/dev/null
cat "$work/bench.pcap" > /dev/null

# One measurement: wall seconds and peak RSS (KiB) via getrusage of the child.
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t
print(f"{wall:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {rc}")
PY
}

declare -A walls rss
for ((r = 0; r < rounds; r++)); do
	for v in peer hooks json html markdown; do
		case $v in
		peer) cmd=("$work/kadiag-main" capture --read "$work/bench.pcap" -o json) ;;
		hooks) cmd=("$work/kadiag-main-hooks" capture --read "$work/bench.pcap" -o json) ;;
		json) cmd=("$work/kadiag" capture --read "$work/bench.pcap" -o json) ;;
		html) cmd=("$work/kadiag" capture --read "$work/bench.pcap" -o html --report "$work/r.html") ;;
		markdown) cmd=("$work/kadiag" capture --read "$work/bench.pcap" -o markdown) ;;
		esac
		read -r w k rc < <(measure "${cmd[@]}")
		[ "$rc" -le 1 ] || { echo "reports bench: $v exited $rc" >&2; exit 1; }
		walls[$v]="${walls[$v]:-} $w"
		rss[$v]=$k
	done
done
html_size=$(stat -c %s "$work/r.html")
python3 - "$size" "$html_size" "${walls[peer]}" "${walls[hooks]}" "${walls[json]}" "${walls[html]}" "${walls[markdown]}" "${rss[peer]}" "${rss[hooks]}" "${rss[json]}" "${rss[html]}" "${rss[markdown]}" <<'PY'
import statistics, sys
size, html = int(sys.argv[1]), int(sys.argv[2])
med = [statistics.median(float(x) for x in a.split()) for a in sys.argv[3:8]]
rss = [int(x) / 1024 for x in sys.argv[8:13]]
names = ["main -o json (peer)", "main+hooks -o json", "this -o json", "this -o html", "this -o markdown"]
print(f"capture --read of a {size} MB pcap, median of {len(sys.argv[3].split())} interleaved runs each:")
for n, m, r in zip(names, med, rss):
    print(f"  {n:22s} {m:6.2f} s  {m / med[0]:5.2f}x the peer  peak RSS {r:6.1f} MiB")
print(f"  HTML report: {html / 1024:.0f} KiB")
PY
