#!/usr/bin/env bash
# The side-by-side table of BENCHMARKS.md: every row against every server,
# servers interleaved within each row, a fresh server process per row (killed
# after it), one line "ROW NAME JSON" per row and server.
#   compare.sh DURATION ROWS NAME=BINARY[,ARG,ARG...] ...
# ROWS: comma list of 1x1,64x16,8x4,sig,idle10k,idle19k,flood, and the
# webwire 2.1 rows keyed64x16, hist, idle21-10k (a 2.1 server only: they
# fail against the raw echo, which cannot do 2.1; compare them with
# 64x16, sig and idle10k on the same server, see bench21.sh).
# IDLE_CONNS and IDLE_HOLD (default 10000 and 10s) change idle10k and
# idle21-10k, for smoke tests only.
set -uo pipefail
duration=$1; rows=$2; shift 2
load=${LOAD:-${CARGO_TARGET_DIR:-target}/release/webwire-load}   # build it alone: cargo build --release -p webwire-load
out=$(mktemp)
start() { # $1 = spec
  local bin=${1%%,*} args=""; [[ $1 == *,* ]] && args=${1#*,}
  # Emptied first: the child's own truncation may come after the first
  # look below, which would then find the previous server's address.
  : >"$out"
  $bin ${args//,/ } >"$out" 2>/dev/null & pid=$!
  url=""; for _ in $(seq 1 100); do url=$(sed -n 's/^listening on //p' "$out"); [ -n "$url" ] && return 0; sleep 0.1; done
  echo "no start: $1" >&2; return 1; }
stop() { kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; }
rawfor() { [[ $1 == *webwire-echo* ]] && echo --raw-echo; }
echo "# uptime before: $(uptime)"
for row in ${rows//,/ }; do
 for srv in "$@"; do
  name=${srv%%=*}; spec=${srv#*=}
  start "$spec" || continue
  raw=$(rawfor "$spec")
  L=(--duration $duration --warmup 1s --url $url --server-pid $pid $raw --json)
  case $row in
   1x1) r=$($load --conns 1 --inflight 1 --size 16 "${L[@]}");;
   64x16) r=$($load --conns 64 --inflight 16 --size 16 "${L[@]}");;
   8x4) r=$($load --conns 8 --inflight 4 --size 65536 "${L[@]}");;
   sig) r=$($load --conns 64 --inflight 16 --size 16 --mode signal "${L[@]}");;
   keyed64x16) r=$($load --conns 64 --inflight 16 --size 16 --mode keyed "${L[@]}");;
   hist) r=$($load --conns 64 --inflight 16 --size 16 --mode hist "${L[@]}");;
   idle21-10k) r=$($load connect --v21 --conns ${IDLE_CONNS:-10000} --hold ${IDLE_HOLD:-10s} --url $url --server-pid $pid $raw --json);;
   idle10k) r=$($load connect --conns ${IDLE_CONNS:-10000} --hold ${IDLE_HOLD:-10s} --url $url --server-pid $pid $raw --json);;
   idle19k) r=$($load connect --conns 19000 --hold 10s --url $url --server-pid $pid $raw --json);;
   flood)
     ( while kill -0 $pid 2>/dev/null; do awk '/VmRSS|VmHWM/{printf "%s %s ",$1,$2}' /proc/$pid/status; echo; sleep 0.5; done ) > "$out.rss-$name" &
     sp=$!
     f=$($load --conns 16 --inflight 200000 --size 16 --mode signal --duration 5s --warmup 0s --grace 1s --url $url --server-pid $pid $raw --json 2>&1 | tail -1)
     hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status); rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
     a=$($load --conns 1 --inflight 1 --size 16 --duration 2s --warmup 0s --url $url --server-pid $pid $raw --json)
     kill $sp; r="{\"flood\":$f,\"hwm_kib\":$hwm,\"rss_after_kib\":$rss,\"after\":$a}";;
  esac
  echo "$row $name $r"
  stop
 done
done
echo "# uptime after: $(uptime)"
rm -f "$out" "$out".rss-*
