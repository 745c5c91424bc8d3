#!/usr/bin/env bash
# The benchmark rows of BENCHMARKS.md against one server, each row on a fresh
# server process (freed memory stays with a process, so idle-memory rows need
# a new one):
#
#   tools/webwire-load/bench.sh echo    [DURATION]   # webwire-echo, the raw WebSocket baseline
#   tools/webwire-load/bench.sh interop [DURATION]   # webwire-interop serve
#
# DURATION is the measured time of each load row (default 5s, after 1s of
# warm-up). Prints, per row, a line `== ROW` and the load generator's JSON
# line. Run it on a machine that is otherwise idle.
set -euo pipefail
kind=${1:?usage: bench.sh echo|interop [DURATION]}
duration=${2:-5s}
cd "$(dirname "$0")/../.."
bin=$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/release

# Built alone, so that cargo does not unify its tokio-websockets features with
# other crates' (another crate's `getrandom` feature would make the load
# generator ask the kernel for every frame's mask).
cargo build --release --locked -q -p webwire-load
case $kind in
    echo) server=("$bin/webwire-echo" --addr 127.0.0.1:0); raw=(--raw-echo) ;;
    interop)
        cargo build --release --locked -q -p webwire-interop
        server=("$bin/webwire-interop" serve --addr 127.0.0.1:0); raw=() ;;
    *) echo "unknown server kind: $kind (echo or interop)" >&2; exit 2 ;;
esac

pid=""
out=$(mktemp)
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
trap 'stop; rm -f "$out"' EXIT

# Starts a fresh server and sets $url and $pid.
start() {
    "${server[@]}" >"$out" 2>/dev/null &
    pid=$!
    url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^listening on //p' "$out")
        [ -n "$url" ] && return 0
        sleep 0.1
    done
    echo "the server did not start" >&2
    exit 1
}

# row NAME ARGS...: one row on a fresh server.
row() {
    local name=$1
    shift
    start
    echo "== $name"
    "$bin/webwire-load" "$@" --url "$url" --server-pid "$pid" "${raw[@]}" --json
    stop
}

load=(--duration "$duration" --warmup 1s)
row "1x1 16 B requests" --conns 1 --inflight 1 --size 16 "${load[@]}"
row "64x16 16 B requests" --conns 64 --inflight 16 --size 16 "${load[@]}"
row "8x4 64 KiB requests" --conns 8 --inflight 4 --size 65536 "${load[@]}"
row "64x16 16 B signals" --conns 64 --inflight 16 --size 16 --mode signal "${load[@]}"
row "10 000 idle connections" connect --conns 10000 --hold 10s
row "19 000 idle connections" connect --conns 19000 --hold 10s
