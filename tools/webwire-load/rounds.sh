#!/usr/bin/env bash
# Interleaved rounds of compare.sh and their medians: what BENCHMARKS.md
# quotes for a change measured against the echo (and a build before it).
#
#   tools/webwire-load/rounds.sh ROUNDS DURATION ROWS OUT NAME=BINARY[,ARG...] ...
#
# Runs compare.sh ROUNDS times (every row, the servers one after the other
# within each row, a fresh server process each time), appends its lines to
# OUT (raw, one "ROW NAME JSON" per row and server, with the load average
# before and after each round), then prints the medians with
# tools/webwire-load/medians.py OUT: per row and server the median
# requests/s, p50, p99, server CPU per request and KiB per idle connection,
# and the medians of the per-round ratios against the first server named
# `echo` (or REF=NAME).
#
# Example (the issue-19 runs; build webwire-load alone first, see
# BENCHMARKS.md):
#   B=$CARGO_TARGET_DIR/release
#   tools/webwire-load/rounds.sh 5 5s 64x16,sig,8x4 runs.txt \
#       echo=$B/webwire-echo,--addr,127.0.0.1:0 \
#       interop=$B/webwire-interop,serve,--addr,127.0.0.1:0
#   tools/webwire-load/rounds.sh 2 5s idle10k,idle19k runs.txt ...
set -uo pipefail
rounds=$1; duration=$2; rows=$3; out=$4; shift 4
here=$(cd "$(dirname "$0")" && pwd)
for i in $(seq 1 "$rounds"); do
  echo "# round $i/$rounds $(date -u +%FT%TZ)" >> "$out"
  "$here/compare.sh" "$duration" "$rows" "$@" >> "$out"
done
python3 "$here/medians.py" "$out"
