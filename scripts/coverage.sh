#!/usr/bin/env bash
# Coverage report of a `go test -coverprofile` run: statement coverage per
# package and in total; fails when the total is below the floor.
#   scripts/coverage.sh PROFILE FLOOR_PERCENT [BINARY_COVDIR]
# BINARY_COVDIR holds the counters of the -cover kadiag binary the command
# tests ran; they are merged with the test profile.
set -euo pipefail
profile=$1 floor=$2 covdir=${3:-}
go=${GO:-go}
[ -s "$profile" ] || { echo "coverage: no profile at $profile (run make test)" >&2; exit 1; }
if [ -n "$covdir" ] && [ -n "$(ls -A "$covdir" 2>/dev/null)" ]; then
	merged=$(mktemp)
	trap 'rm -f "$merged" "$merged.bin"' EXIT
	$go tool covdata textfmt -i="$covdir" -o "$merged.bin"
	{ cat "$profile"; tail -n +2 "$merged.bin"; } > "$merged"
	profile=$merged
fi
# Lines are "file:start,end statements count" after the mode line.
awk 'NR > 1 {
	split($1, a, ":"); pkg = a[1]; sub(/\/[^\/]*$/, "", pkg)
	if (!($1 in seen)) { seen[$1] = 1; tot[pkg] += $2 }
	if ($3 > 0 && !($1 in hit)) { hit[$1] = 1; cov[pkg] += $2 }
}
END { for (p in tot) printf "coverage: %-48s %5.1f%%\n", p, 100 * cov[p] / tot[p] }' "$profile" | sort
total=$($go tool cover -func="$profile" | awk '/^total:/ { sub(/%/, "", $NF); print $NF }')
echo "coverage: total $total% (floor $floor%)"
awk -v t="$total" -v f="$floor" 'BEGIN { exit !(t + 0 >= f + 0) }' || {
	echo "coverage: total $total% is below the floor of $floor%" >&2
	exit 1
}
