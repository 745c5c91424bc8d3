#!/usr/bin/env bash
# The project's main job on a fresh machine. For now: decode the example
# messages of PROTOCOL.md with the codec.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p webwire-proto --example inspect -- \
    800100000000000000046563686f6869 \
    810200000000000000036162630068006900
cargo run -q -p webwire-proto --example inspect -- --from-server \
    17020060ea000000200000 c102000000000000000068006900
