#!/usr/bin/env bash
# The webwire 2.1 benchmarks of BENCHMARKS.md, all in one run:
#
#   tools/webwire-load/bench21.sh OUT [ROUNDS] [DURATION] [SESSIONS]
#
#   OUT       file the raw lines are appended to (one "ROW NAME JSON" each);
#             the medians are printed from it at the end
#   ROUNDS    rounds of everything (default 5)
#   DURATION  measured time of each load row (default 5s, after 1 s warm-up)
#   SESSIONS  sessions of the resume benchmark (default 10000)
#
# What it measures, each round, on a fresh interop server per row (built in
# release first, each crate alone, as bench.sh does):
#
# 1. The cost of 2.1 at 64 x 16 against plain webwire on the same server,
#    rows interleaved: 64x16 (plain requests) then keyed64x16 (keyed
#    requests: each connection opted in and logged in), sig (ping -> pong
#    signals) then hist (room-ping -> room-pong StreamSignal of a history
#    room). The raw echo is left out: it cannot do 2.1.
# 2. Memory per idle connection: idle10k (plain 2.0) then idle21-10k (2.1,
#    with a session, a keyed-request ledger and a session stream).
# 3. The resume benchmark (webwire-load resume): SESSIONS sessions with a
#    history room each, in the load generator's process; the server drops
#    all their connections at once (close-all-connections); the time until
#    all have reconnected, restored and received every missed signal,
#    nothing missing or doubled. resume-1node: one interop server.
#    resume-2node: two interop servers sharing a fresh redis-server (one
#    per run, on a free port), the sessions dropped by the first and
#    resumed on the second.
#
# Servers and the load generator are separate processes; each needs one
# file descriptor per connection (the limit is raised to the hard limit
# here; 10 000 sessions need about 10 000 in each process).
#
# Smoke test (seconds, not a measurement):
#   IDLE_CONNS=100 IDLE_HOLD=1s tools/webwire-load/bench21.sh /tmp/b21.txt 1 1s 100
set -uo pipefail
out=${1:?usage: bench21.sh OUT [ROUNDS] [DURATION] [SESSIONS]}
rounds=${2:-5}
duration=${3:-5s}
sessions=${4:-10000}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
bin=$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/release
export LOAD=$bin/webwire-load

# Built alone, so that cargo does not unify the load generator's
# tokio-websockets features with other crates' (see bench.sh).
cargo build --release --locked -q -p webwire-load || exit 2
cargo build --release --locked -q -p webwire-interop || exit 2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "# open files limit $(ulimit -n); $(nproc) CPUs" | tee -a "$out"

interop=$bin/webwire-interop
pids=()
tmp=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
}
trap 'cleanup; rm -rf "$tmp"' EXIT

# start NAME ARGS...: starts an interop server, sets $url and $pid.
start() {
    local name=$1; shift
    : >"$tmp/$name.out"
    "$interop" serve --addr 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!; pids+=("$pid")
    url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^listening on //p' "$tmp/$name.out")
        [ -n "$url" ] && return 0
        sleep 0.1
    done
    echo "# $name did not start: $(tail -3 "$tmp/$name.err")" | tee -a "$out" >&2
    return 1
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

resume_1node() {
    start one || return
    local r
    r=$("$LOAD" resume --sessions "$sessions" --url "$url" --server-pid "$pid" --json)
    [ -n "$r" ] && echo "resume-1node interop $r" | tee -a "$out" || echo "# resume-1node failed" | tee -a "$out"
    cleanup
}

resume_2node() {
    local port
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    local redis=redis://127.0.0.1:$port/
    start a --redis "$redis" --node-id a || { cleanup; return; }
    local url_a=$url pid_a=$pid
    start b --redis "$redis" --node-id b || { cleanup; return; }
    local r
    r=$("$LOAD" resume --sessions "$sessions" --url "$url_a" --resume-url "$url" \
        --server-pid "$pid_a" --server-pid "$pid" --json)
    [ -n "$r" ] && echo "resume-2node interop $r" | tee -a "$out" || echo "# resume-2node failed" | tee -a "$out"
    cleanup
}

for i in $(seq 1 "$rounds"); do
    echo "# round $i/$rounds $(date -u +%FT%TZ)" >>"$out"
    "$here/compare.sh" "$duration" 64x16,keyed64x16,sig,hist,idle10k,idle21-10k \
        "interop=$interop,serve,--addr,127.0.0.1:0" | tee -a "$out"
    echo "# resume, round $i: $(uptime)" >>"$out"
    resume_1node
    resume_2node
done

python3 "$here/medians.py" "$out" echo keyed64x16:64x16,hist:sig,idle21-10k:idle10k
