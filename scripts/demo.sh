#!/usr/bin/env bash
# The project's main job on a fresh machine: the chat room example
# (examples/chat). Builds the chat server (it has the page and the browser
# client compiled in: only Rust is needed), starts it, and once it listens
# prints the URL to open in two browsers to chat. Ctrl-C stops the server.
#
# Environment: CHAT_ADDR (default 127.0.0.1:8080; port 0 picks a free one),
# CHAT_SESSION_DIR (default .chat-sessions, where sessions are kept across
# restarts), CHAT_SERVER_BIN (run that chat-server instead of building one;
# the tests use it). Extra arguments go to chat-server (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# chat-server reads both.
export CHAT_ADDR=${CHAT_ADDR:-127.0.0.1:8080}
export CHAT_SESSION_DIR=${CHAT_SESSION_DIR:-.chat-sessions}

if [ -n "${CHAT_SERVER_BIN:-}" ]; then
    bin=$CHAT_SERVER_BIN
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "demo.sh: cargo (Rust) is needed to build the chat server" >&2
        exit 1
    fi
    echo "==> building the chat server"
    cargo build --release --locked -p webwire-chat
    bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/chat-server
fi

echo "==> starting the chat server on $CHAT_ADDR (sessions in $CHAT_SESSION_DIR)"
out=$(mktemp)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    rm -f "$out"
}
trap cleanup EXIT
# Ctrl-C and TERM go to the server, which shuts down gracefully; the script
# then ends with its exit status.
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true' INT TERM
# Its output is shown as it comes and kept in $out, where the listening line
# is looked for (tee writes the terminal first, so the URL line follows it).
"$bin" "$@" > >(tee "$out") &
pid=$!

url=""
deadline=$((SECONDS + 60))
while [ -z "$url" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "demo.sh: the chat server printed no listening line within 60 s" >&2
        exit 1
    fi
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out")
    [ -n "$url" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        status=0
        wait "$pid" || status=$?
        pid=""
        echo "demo.sh: the chat server did not start (exit status $status, its message is above)" >&2
        exit $((status == 0 ? 1 : status))
    fi
    sleep 0.05
done

addr=${url#http://}
addr=${addr%/}
echo "==> the chat room is up: open $url in a browser (two, to chat with yourself); Ctrl-C stops it"
echo "    terminal client: cargo run --release -p webwire-chat --bin chat-client -- ws://$addr/ws"

# `wait` returns early when a trapped signal arrives: wait again until the
# server has really exited, and end with its status.
status=0
while :; do
    status=0
    wait "$pid" || status=$?
    kill -0 "$pid" 2>/dev/null || break
done
pid=""
exit "$status"
