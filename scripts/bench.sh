#!/usr/bin/env bash
# Runs every benchmark; each prints its figures as ratios against the peer
# measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in scripts/bench/*.sh; do
	[ -e "$b" ] || continue
	echo "== $b"
	bash "$b"
done
