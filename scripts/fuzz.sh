#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while: briefly in CI (FUZZ_SECONDS, default 30 per
# target), for ten minutes or more when looking for bugs (docs/benchmarks.md has the figures).
# Inputs are the committed seeds plus whatever earlier runs found; a crash fails the script
# and leaves the input under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                      every target, 30 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh line_parsers
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# Sanitizer builds have their own artefacts: never mix them with the workspace's.
export CARGO_TARGET_DIR="${PARQUETRY_FUZZ_TARGET_DIR:-$HOME/.cache/parquetry-fuzz-target}"
# cargo-fuzz passes -Z flags for the sanitizers; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-30}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t (${seconds}s)"
  dict=()
  [ -f "dict/$t.dict" ] && dict=(-dict="dict/$t.dict")
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 "${dict[@]}" \
    -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|ERROR|SUMMARY" || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz: $t found a failing input: $(ls artifacts/$t)" >&2
    exit 1
  fi
done
echo "== fuzz: ok"
