#!/usr/bin/env bash
# Runs the whole test suite. The end-to-end tests drive Parquetry with Loki client libraries
# that others maintain (winston-loki from npm, python-logging-loki from PyPI) and read its files
# with pyarrow, so this installs those first (idempotent, cached), then runs cargo test.
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
cargo test --workspace "$@"
