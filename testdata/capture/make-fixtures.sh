#!/usr/bin/env bash
# Regenerates the capture fixtures in this directory from real traffic:
# capture/lab_test.go builds a client and a server network namespace, runs
# real TCP connections with keepalive set by setsockopt (answered probes,
# no keepalive, probes lost to an nftables drop rule, zero window probes,
# retransmissions, IPv6, server-side keepalive) and captures them with
# tcpdump (-i veth, nanosecond, -i any) and with kadiag's own live capture.
# capture/convert_test.go then re-frames the same packets as raw IP (101,
# 228, 229), BSD null/loop, 802.1Q and QinQ, a snaplen of 96 and 60, a
# three-interface pcapng with mixed link types, and gzip.
#
# Needs root, tcpdump, nft and nsenter. Usage: testdata/capture/make-fixtures.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
KADIAG_WRITE_FIXTURES="$tmp" go test -count=1 -run '^TestWriteFixtures$' ./capture
rm -f "$here"/*.pcap "$here"/*.pcapng "$here"/*.gz
cp "$tmp"/* "$here"/
ls -l "$here"
