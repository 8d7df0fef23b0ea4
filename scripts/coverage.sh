#!/usr/bin/env bash
# Coverage report of `go test -coverprofile` runs: statement coverage per
# package and in total over all the profiles given (missing ones are
# skipped); fails when the total is below the floor.
#   scripts/coverage.sh FLOOR_PERCENT PROFILE [PROFILE...]
set -euo pipefail
floor=$1
shift
go=${GO:-go}
merged=$(mktemp)
trap 'rm -f "$merged"' EXIT
first=1
for p in "$@"; do
	[ -s "$p" ] || continue
	if [ $first = 1 ]; then cat "$p"; first=0; else tail -n +2 "$p"; fi
done > "$merged"
[ -s "$merged" ] || { echo "coverage: no profile among $* (run make test)" >&2; exit 1; }
# Lines are "file:start,end statements count" after the mode line; a block
# several profiles cover counts once.
awk 'NR > 1 {
	split($1, a, ":"); pkg = a[1]; sub(/\/[^\/]*$/, "", pkg)
	if (!($1 in seen)) { seen[$1] = 1; tot[pkg] += $2 }
	if ($3 > 0 && !($1 in hit)) { hit[$1] = 1; cov[pkg] += $2 }
}
END { for (p in tot) printf "coverage: %-48s %5.1f%%\n", p, 100 * cov[p] / tot[p] }' "$merged" | sort
total=$($go tool cover -func="$merged" | awk '/^total:/ { sub(/%/, "", $NF); print $NF }')
echo "coverage: total $total% (floor $floor%)"
awk -v t="$total" -v f="$floor" 'BEGIN { exit !(t + 0 >= f + 0) }' || {
	echo "coverage: total $total% is below the floor of $floor%" >&2
	exit 1
}
