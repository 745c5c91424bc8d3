#!/usr/bin/env bash
# The project's main job on a fresh machine: the chat room example
# (examples/chat). Builds the browser client (clients/typescript, needs
# Node 20+ and npm) and the chat server, then starts the server, which
# serves the page and its WebSocket endpoint on one port. Open the printed
# URL in two browsers and chat; Ctrl-C stops the server.
#
# Environment: CHAT_ADDR (default 127.0.0.1:8080), CHAT_SESSION_DIR
# (default .chat-sessions, where sessions are kept across restarts).
# Extra arguments go to chat-server (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
addr=${CHAT_ADDR:-127.0.0.1:8080}
sessions=${CHAT_SESSION_DIR:-.chat-sessions}

if ! command -v npm >/dev/null 2>&1; then
    echo "demo.sh: npm (Node 20 or later) is needed to build the browser client" >&2
    exit 1
fi

echo "==> building the TypeScript client (clients/typescript)"
(cd clients/typescript && npm ci --no-audit --no-fund && npm run build)

echo "==> building the chat server"
cargo build --release --locked -p webwire-chat

echo "==> starting the chat server: open http://$addr/ in a browser (Ctrl-C stops it)"
echo "    terminal client: cargo run --release -p webwire-chat --bin chat-client -- ws://$addr/ws"
exec cargo run --release --locked -q -p webwire-chat --bin chat-server -- \
    --addr "$addr" --session-dir "$sessions" "$@"
