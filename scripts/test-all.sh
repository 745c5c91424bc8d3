#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: it installs and starts
# what the tests need and stops it afterwards. `.ci/run` calls this script.
#
# With CI=true a test whose service is missing fails; otherwise it may skip
# with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

section() { printf '\n==> %s\n' "$*"; }

# Installs Debian packages that are not there yet (as root, as on CI).
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    section "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

section "Rust: unit, integration and doc tests"
cargo test --workspace --locked

echo
echo "all test suites passed"
