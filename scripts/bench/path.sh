#!/usr/bin/env bash
# Benchmark of `kadiag path`: on a lab whose NAT forgets idle flows after
# 60 s (silent drop), kadiag's wall time / T and its error against the
# configured timeout, beside the fixed-schedule method of NAT-TCP-test
# (130 connections, connection i tested after i+1 minutes) on the same lab
# in the same run (path.BenchmarkPath); then the counterpart's memory per
# held connection with 2,000 held from four client addresses
# (path.TestCounterpartMemory). Goals: within ±2 % in ≤ 1.1 × T; ≤ 16 KiB
# per held connection. Needs root (network namespaces); about 70 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "path bench: needs root (network namespaces); skipped"
	exit 0
fi
go test -count=1 -run '^$' -bench '^BenchmarkPath$' -benchtime 1x ./path | grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\)'
go test -count=1 -run '^TestCounterpartMemory$' -v ./path | sed -n 's/.*counterpart: \(.*\)/counterpart memory: \1 (goal ≤ 16384)/p'
