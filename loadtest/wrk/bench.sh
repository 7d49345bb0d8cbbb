#!/usr/bin/env bash
# HTTP benchmark of a release build with wrk (Debian package `wrk`).
#
#   loadtest/wrk/bench.sh sqlite
#   loadtest/wrk/bench.sh postgres [postgres://postgres@127.0.0.1:5432/postgres]
#
# Starts the server on a fresh database, creates a user, a workspace and a document, then
# measures: a trivial route (the machine's ceiling), GET /api/v1/documents/{id}, document
# creation, and login. Prints one markdown table row per scenario.
set -euo pipefail
backend="${1:-sqlite}"
admin_url="${2:-postgres://postgres@127.0.0.1:5432/postgres}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
port="${PORT:-18181}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${STOA_BIN:-$root/target/release/stoa}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; [ -n "${db:-}" ] && psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

case "$backend" in
  sqlite) url="sqlite://$work/stoa.db" ;;
  postgres)
    db="stoa_bench_$$"
    psql "$admin_url" -qc "CREATE DATABASE $db" >/dev/null
    url="${admin_url%/*}/$db" ;;
  *) echo "usage: $0 sqlite|postgres [admin-url]" >&2; exit 2 ;;
esac

STOA_SERVER__PORT="$port" STOA_DATABASE__URL="$url" STOA_DATA_DIR="$work" \
STOA_AUTH__JWT_SECRET="benchmark-secret-0123456789abcdef-GHIJKLMNOPQRSTUV" \
STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=1000000000 STOA_LOG__LEVEL=warn \
STOA_HTTP__USER_REQUESTS_PER_SEC=1000000000 STOA_HTTP__USER_REQUEST_BURST=1000000000 \
  "$bin" >"$work/server.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -sf "$base/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"benchmark password","display_name":"Bench"}' >/dev/null
token=$(curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"benchmark password"}' | json '["access_token"]')
ws=$(curl -sf "$base/api/v1/workspaces" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"Bench"}' | json '["id"]')
doc=$(curl -sf "$base/api/v1/workspaces/$ws/documents" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"title\":\"Bench\",\"content\":\"$(printf 'lorem ipsum %.0s' $(seq 1 100))\"}" | json '["id"]')

run() { # name, connections, wrk args...
  local name="$1" conns="$2"; shift 2
  local out
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errors
  errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  echo "| $backend | $name | $conns | $rps | $p50 | $p99 | ${errors:-0} |"
}

echo "| backend | scenario | connections | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
run "GET /healthz (ceiling)" "$connections" "$base/healthz"
run "GET /api/v1/documents/{id}" "$connections" -H "authorization: Bearer $token" "$base/api/v1/documents/$doc"
TOKEN="$token" run "POST /api/v1/workspaces/{id}/documents" "$connections" \
  -s "$here/create_document.lua" "$base/api/v1/workspaces/$ws/documents"
run "POST /api/v1/auth/login" 16 -s "$here/login.lua" "$base/api/v1/auth/login"
