#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each:
#   scripts/fuzz.sh [FUZZTIME]     (default 30s; make test uses a short pass)
# A failing input is written under the package's testdata/fuzz/<Target>/;
# commit it with the fix, so the regression runs in every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
go=${GO:-go}
status=0
for pkg in $($go list ./...); do
	dir=$($go list -f '{{.Dir}}' "$pkg")
	# Fuzz targets are declared at the start of a line in *_test.go files.
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "fuzz: $pkg $t ($fuzztime)"
		if ! $go test -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" "$pkg" >/tmp/kadiag-fuzz.$$.log 2>&1; then
			cat /tmp/kadiag-fuzz.$$.log
			status=1
		fi
	done
done
rm -f /tmp/kadiag-fuzz.$$.log
exit $status
