#!/usr/bin/env bash
# Runs the whole test suite. The end-to-end tests drive Parquetry with Loki client libraries
# that others maintain (winston-loki from npm, python-logging-loki from PyPI) and read its files
# with pyarrow, so this installs those first (idempotent, cached), then runs cargo test, and
# the end-to-end tests a second time against a local S3 server (SeaweedFS).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parquetry-target}"
venv="${PARQUETRY_VENV:-$HOME/.cache/parquetry-venv}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)

export PARQUETRY_TEST_PYTHON="$venv/bin/python"
export PARQUETRY_TEST_NODE="${PARQUETRY_TEST_NODE:-node}"

# --- S3 backend: a loopback SeaweedFS (scripts/s3-server.sh), stopped on exit if we started it.
export PARQUETRY_WEED="$venv/bin/weed"
s3_started=0
if ! scripts/s3-server.sh status; then
  s3_started=1
  # Another server (another checkout's tests, a leftover) may hold the default ports.
  if [ -z "${PARQUETRY_S3_PORT:-}" ]; then
    PARQUETRY_S3_PORT="$(scripts/s3-server.sh free-port)"
    export PARQUETRY_S3_PORT
  fi
fi
# Armed before the start, so a start that fails half-way leaves no server behind.
if [ "$s3_started" = 1 ]; then trap 'scripts/s3-server.sh stop' EXIT; fi
scripts/s3-server.sh start
eval "$(scripts/s3-server.sh env)"
export PARQUETRY_TEST_REQUIRE_S3="${PARQUETRY_TEST_REQUIRE_S3:-1}"
# The ruler test needs Debian's prometheus and prometheus-alertmanager (.ci/run installs them).
export PARQUETRY_TEST_REQUIRE_RULER_DEPS="${PARQUETRY_TEST_REQUIRE_RULER_DEPS:-1}"
# --- end S3 backend

cargo test --workspace "$@"
echo "== end-to-end tests again, on S3"
PARQUETRY_TEST_BACKEND=s3 cargo test -p parquetry-e2e "$@"
# The query function's fan-out leaves (handler and under the Lambda emulator) on S3 too.
PARQUETRY_TEST_BACKEND=s3 cargo test -p parquetry-lambda-query --test leaf --test emulator "$@"
