#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: it installs and starts
# what the tests need and stops it afterwards. `.ci/run` calls this script.
#
# Sections run when their component is in the tree. With CI=true a test
# whose service is missing fails; otherwise it may skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Each section's start says how long the run has taken so far, so a slow
# suite shows where its time goes.
section() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

# Background processes and temporary files made here, stopped and removed
# on exit whatever happens; a failed run still says which suites ran.
pids=()
temps=()
ran=()
skipped=()
cleanup() {
    local status=$?
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    for temp in "${temps[@]:-}"; do
        [ -n "$temp" ] && rm -rf "$temp"
    done
    if [ "$status" -ne 0 ]; then
        summary
        echo "FAILED (exit status $status)"
    fi
}
trap cleanup EXIT

# Installs Debian packages whose command is not there yet. Each argument
# is PACKAGE:COMMAND; a command already on PATH (installed some other way)
# needs no package, so machines without apt-get run the tests too.
apt_install() {
    local missing=()
    for spec in "$@"; do
        local pkg=${spec%%:*} cmd=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 && continue
        dpkg -s "$pkg" >/dev/null 2>&1 && continue
        missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "no apt-get to install ${missing[*]}: install them by other means" >&2
        return 1
    fi
    section "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What ran and what did not, printed at the end.
summary() {
    echo
    echo "==> suites run: ${ran[*]:-none}"
    [ ${#skipped[@]} -eq 0 ] || echo "==> suites not run: ${skipped[*]}"
}

# Services the Rust tests start themselves (redis-server) must be installed first.
if [ -d crates/webwire-redis ]; then
    apt_install redis-server:redis-server
    # The tests start their own instances; the one Debian starts is not used.
    service redis-server stop >/dev/null 2>&1 || true
fi

section "dependencies: licenses, banned crates and sources (cargo-deny)"
if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "installing cargo-deny (once per machine, a few minutes)"
    cargo install --locked -q cargo-deny
fi
# Advisories need the RustSec database from the network: run
# `cargo deny check advisories` by hand.
cargo deny --log-level error check bans licenses sources
ran+=("cargo-deny")

section "Rust: unit, integration and doc tests"
cargo test --workspace --locked
ran+=("rust")

# The sections below run the workspace's binaries as built for the tests
# above (the debug profile: the same code, checked by those tests), so
# that no second, optimised build of every dependency is made here; this
# only links what `cargo test` did not need. Absolute paths, wherever
# cargo puts its target directory.
bins=()
for spec in webwire-interop:tools/webwire-interop webwire-load:tools/webwire-load \
    webwire-chat:examples/chat webwire-faultproxy:tools/webwire-faultproxy; do
    [ -f "${spec#*:}/Cargo.toml" ] && bins+=(-p "${spec%%:*}")
done
[ ${#bins[@]} -eq 0 ] || cargo build --locked -q "${bins[@]}"
debug=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug
# The binaries the Node tests take from the environment, where built (a
# test without them builds them or skips, as it says).
[ -x "$debug/webwire-faultproxy" ] && export WEBWIRE_FAULTPROXY_BIN=${WEBWIRE_FAULTPROXY_BIN:-$debug/webwire-faultproxy}
[ -x "$debug/chat-server" ] && export CHAT_SERVER_BIN=${CHAT_SERVER_BIN:-$debug/chat-server}

if [ -f tools/webwire-interop/Cargo.toml ]; then
    section "interop: the binary, alone and as two nodes sharing a Redis"
    interop=$debug/webwire-interop
    # Starts `webwire-interop serve --addr 127.0.0.1:0 ARGS...` in the
    # background and sets $started to the URL it prints.
    start_interop() {
        local out
        out=$(mktemp)
        temps+=("$out")
        "$interop" serve --addr 127.0.0.1:0 "$@" >"$out" &
        pids+=($!)
        started=""
        for _ in $(seq 1 100); do
            started=$(sed -n 's/^listening on //p' "$out")
            [ -n "$started" ] && return 0
            sleep 0.1
        done
        echo "interop server ($*) did not start:"
        cat "$out"
        exit 1
    }
    # The full checker run is in `cargo test` (tools/webwire-interop/tests/
    # checker.rs, in-process); here the binary gets a few checks.
    # This server also serves the load and TypeScript tests below.
    start_interop
    url=$started
    "$interop" check "$url" --only accept-conf,any-origin,echo-utf8
    export WEBWIRE_INTEROP_BIN="$interop"

    # --redis: two nodes on one redis-server of our own (a free loopback
    # port, no persistence), each checked on what Redis changes: sessions
    # and broadcast.
    # Whether a Redis answers PING on this loopback port (bash's /dev/tcp:
    # redis-cli need not be installed).
    redis_ping() {
        (
            exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
            printf 'PING\r\n' >&3
            read -r -t 1 reply <&3 || exit 1
            [ "${reply%$'\r'}" = "+PONG" ]
        ) 2>/dev/null
    }
    if command -v redis-server >/dev/null 2>&1; then
        redis_dir=$(mktemp -d)
        temps+=("$redis_dir")
        redis_port=""
        for _ in 1 2 3 4 5; do
            port=$((20000 + RANDOM % 40000))
            # Taken if something answers there.
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
            redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                --dir "$redis_dir" >"$redis_dir/log" 2>&1 &
            pids+=($!)
            for _ in $(seq 1 50); do
                if redis_ping "$port"; then
                    redis_port=$port
                    break 2
                fi
                sleep 0.1
            done
        done
        [ -n "$redis_port" ] || { echo "redis-server did not start:"; cat "$redis_dir/log"; exit 1; }
        redis_checks=login,logout,whoami,restore,session,broadcast
        for node in a b; do
            start_interop --redis "redis://127.0.0.1:$redis_port/" --node-id "$node"
            echo "node $node ($started):"
            "$interop" check "$started" --only "$redis_checks"
        done
        ran+=("interop-redis")
    elif [ "${CI:-}" = "true" ]; then
        echo "redis-server is missing: the interop server's --redis mode cannot be tested"
        exit 1
    else
        echo "redis-server is not installed: skipping the interop server's --redis mode"
        skipped+=("interop-redis (no redis-server)")
    fi
    ran+=("interop")
else
    skipped+=("interop (no tools/webwire-interop)")
fi

if [ -f tools/webwire-load/Cargo.toml ] && [ -n "${WEBWIRE_INTEROP_BIN:-}" ]; then
    section "load generator: one second against the interop server"
    "$debug/webwire-load" --url "$url" --conns 4 --inflight 4 --duration 1s --warmup 0s --fail-on-error
    ran+=("load")
else
    skipped+=("load (no tools/webwire-load or interop server)")
fi

if [ -f clients/typescript/package.json ]; then
    section "TypeScript client: unit and interop tests"
    # The interop server started above serves the integration tests too;
    # the cut tests run the binaries built above.
    (cd clients/typescript && npm ci --no-audit --no-fund &&
        WEBWIRE_URL=${WEBWIRE_URL:-${url:-}} npm test)
    ran+=("typescript")
else
    skipped+=("typescript (no clients/typescript/package.json)")
fi

if [ -f examples/chat/e2e/package.json ]; then
    section "chat example: browser end-to-end test (headless Chromium)"
    if [ "${CI:-}" = "true" ]; then
        apt_install chromium:chromium
    else
        apt_install chromium:chromium || echo "chromium could not be installed: the browser test will skip"
    fi
    (cd clients/typescript && npm ci --no-audit --no-fund && npm run build)
    # The chat server, and the fault proxy that cuts the page's connection,
    # as built above. With CI=true a missing chromium fails the test;
    # otherwise it skips with the reason.
    (cd examples/chat/e2e && npm ci --no-audit --no-fund && npm test)
    ran+=("browser")
else
    skipped+=("browser (no examples/chat/e2e/package.json)")
fi

summary
echo "all test suites passed in $((SECONDS / 60))m$((SECONDS % 60))s"
