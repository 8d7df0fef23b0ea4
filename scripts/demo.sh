#!/usr/bin/env bash
# make demo: an AWS NAT Gateway (350 s idle timeout, RST after expiry) in a
# lab of network namespaces, time scaled ÷35: the same client without
# keepalive hangs, with the bundled library it gets its answer — the failure
# and the fix side by side in about half a minute. Nothing on the host changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (kadiag simulate builds network namespaces); try: sudo make demo" >&2
	exit 2
fi
exec bin/kadiag simulate --preset aws-nat --scale 35
