#!/usr/bin/env bash
# Benchmark of `kadiag simulate`'s lab against the same topology built and
# torn down by an ip/nft shell script (peers/simulate-lab.sh; not itself a benchmark, so make bench does not run it alone), measured in the
# same run:
#   1. lab up+down, in process (kadiag simulate --bench-labs N, mean per lab)
#   2. lab up+down, a whole kadiag process per lab
#   3. a whole one-scenario run with no response delay (lab, server, client,
#      HTTP exchange through the NAT, evidence, teardown, report)
#   4. a 3-hop lab (aws-ec2-conntrack, aws-nat, aws-nlb: five namespaces,
#      four veth pairs, three rulesets) up+down, in process, against the same
#      chain built by peers/simulate-chain.sh
# Needs root. N defaults to 30 (BENCH_N).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${BENCH_N:-30}
kadiag=${KADIAG:-bin/kadiag}
[ -x "$kadiag" ] || { echo "simulate bench: build first (make build)" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then echo "simulate bench: needs root (network namespaces)" >&2; exit 2; fi

now() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (b - a) / n / 1e6 }'; }

# Warm up both (module loading, page cache).
scripts/bench/peers/simulate-lab.sh warm >/dev/null
scripts/bench/peers/simulate-chain.sh warm >/dev/null
"$kadiag" simulate --bench-labs 3 >/dev/null
chain=(--hop aws-ec2-conntrack --hop aws-nat --hop aws-nlb)
"$kadiag" simulate --bench-labs 3 "${chain[@]}" >/dev/null

t0=$(now)
for i in $(seq "$n"); do scripts/bench/peers/simulate-lab.sh "b$i"; done
t1=$(now)
script_ms=$(ms "$t0" "$t1" "$n")

inproc_ms=$("$kadiag" simulate --bench-labs "$n" | awk '{ print $1 }')

t0=$(now)
for i in $(seq "$n"); do "$kadiag" simulate --bench-labs 1 >/dev/null; done
t1=$(now)
proc_ms=$(ms "$t0" "$t1" "$n")

t0=$(now)
for i in $(seq "$n"); do
	"$kadiag" simulate -o json --scenario app --idle 5s --response-delay 0 --keepidle 1s >/dev/null 2>&1
done
t1=$(now)
run_ms=$(ms "$t0" "$t1" "$n")

t0=$(now)
for i in $(seq "$n"); do scripts/bench/peers/simulate-chain.sh "c$i"; done
t1=$(now)
chain_script_ms=$(ms "$t0" "$t1" "$n")
chain_ms=$("$kadiag" simulate --bench-labs "$n" "${chain[@]}" | awk '{ print $1 }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
echo "ip/nft script, lab up+down:                 ${script_ms} ms"
echo "kadiag lab up+down (in process):            ${inproc_ms} ms  → $(ratio "$script_ms" "$inproc_ms")× faster (goal ≥ 5×)"
echo "kadiag lab up+down (a process per lab):     ${proc_ms} ms  → $(ratio "$script_ms" "$proc_ms")× faster"
echo "kadiag whole one-scenario run, no delay:    ${run_ms} ms  → $(ratio "$script_ms" "$run_ms")× faster than the script's bare lab (goal > 1×)"
echo "ip/nft script, 3-hop lab up+down:           ${chain_script_ms} ms"
echo "kadiag 3-hop lab up+down (in process):      ${chain_ms} ms  → $(ratio "$chain_script_ms" "$chain_ms")× faster (goal ≥ 5×)"
