#!/usr/bin/env bash
# The hardening load test (docs/benchmarks.md#hardening-load-test): builds the release
# `parquetry` and the `loadtest` tool, then runs both variants against a real server process:
#
#   1. steady:  8 pushers + 2 query clients + compaction for 60 s, SIGTERM, restart, check;
#   2. kill -9: the same, with the server SIGKILLed and restarted every 10 s.
#
# Each variant takes under two minutes and exits non-zero if any acknowledged entry is lost or
# returned twice. Not run by CI. Extra arguments go to both runs (e.g. --duration 30);
# `$CARGO_TARGET_DIR/release/loadtest --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parquetry-release}"
# One build for both binaries, so they share one feature set and one set of artifacts.
cargo build --release -p parquetry -p parquetry-e2e --bin parquetry --bin loadtest

bin="$CARGO_TARGET_DIR/release"
status=0
echo "### steady"
"$bin/loadtest" --parquetry "$bin/parquetry" "$@" || status=1
echo "### kill -9 every 10 s"
"$bin/loadtest" --parquetry "$bin/parquetry" --kill-every 10 "$@" || status=1
exit "$status"
