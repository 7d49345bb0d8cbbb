#!/usr/bin/env bash
# Attachment throughput on both blob stores: a release build keeping blobs in a directory,
# then in moto's S3 server (.ci/venv, as .ci/run installs it); for each, one SIZE_MIB file
# uploaded and downloaded with curl (MB/s as curl counts them), the server's RSS sampled
# from /proc every 50 ms during each transfer, then PARALLEL uploads of SIZE_MIB/PARALLEL
# at once (their total MB/s).
#
#   loadtest/attachments.sh [SIZE_MIB] [PARALLEL]
#
# e.g. loadtest/attachments.sh 1024 4
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}; PARALLEL=${2:-4}
PORT=${PORT:-8094}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa
MOTO=.ci/venv/bin/moto_server
[ -x "$MOTO" ] || { echo "no $MOTO: run .ci/run once, or pip install 'moto[server]' into .ci/venv" >&2; exit 1; }
WORK=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The file: a PDF header (an allowed type), then bytes that do not compress.
{ printf '%%PDF-1.7\n'; head -c $((SIZE_MIB * 1048576 - 9)) /dev/urandom; } > "$WORK/file.pdf"
PART=$((SIZE_MIB / PARALLEL))
{ printf '%%PDF-1.7\n'; head -c $((PART * 1048576 - 9)) /dev/urandom; } > "$WORK/part.pdf"

MOTO_PORT=$((PORT + 1))
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" > /dev/null 2>&1 &
until curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/"; do sleep 0.2; done
curl -s -o /dev/null -X PUT "http://127.0.0.1:$MOTO_PORT/bench"

rss() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }
# Runs "$@" while sampling the RSS of $PID; prints "<command's output> <peak MiB>".
watched() {
  local peak; peak=$(rss "$PID")
  "$@" > "$WORK/out" &
  local job=$!
  while kill -0 "$job" 2>/dev/null; do
    local now; now=$(rss "$PID"); [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.05
  done
  wait "$job"
  echo "$(cat "$WORK/out") $peak"
}

run() {
  local store=$1; shift
  local data="$WORK/$store"; mkdir -p "$data"
  env STOA_DATA_DIR="$data" STOA_DATABASE__URL="sqlite://$data/stoa.db" STOA_LOG__LEVEL=warn \
    STOA_AUTH__PASSWORD_HASH_MEMORY_KIB=8192 STOA_AUTH__PASSWORD_HASH_ITERATIONS=1 \
    STOA_SERVER__PORT=$PORT STOA_STORAGE__MAX_FILE_BYTES=$((SIZE_MIB * 2 * 1048576)) \
    STOA_STORAGE__WORKSPACE_QUOTA_BYTES=$((SIZE_MIB * 8 * 1048576)) "$@" \
    "$CARGO_TARGET_DIR/release/stoa" &
  PID=$!
  until curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null; do sleep 0.2; done
  local api="http://127.0.0.1:$PORT/api/v1"
  local token ws doc
  token=$(curl -s -X POST "$api/auth/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password here","display_name":"bench"}' |
    python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
  ws=$(curl -s -X POST "$api/workspaces" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"Bench"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
  doc=$(curl -s -X POST "$api/workspaces/$ws/documents" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"title":"Files"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
  local idle; idle=$(rss "$PID")
  read -r code up peak_up < <(watched curl -s -o "$WORK/created" -w '%{http_code} %{speed_upload}\n' \
    -H "authorization: Bearer $token" -H 'Expect:' -X POST -T "$WORK/file.pdf" \
    "$api/documents/$doc/attachments?name=big.pdf")
  [ "$code" = 201 ] || { echo "upload: $code $(cat "$WORK/created")" >&2; exit 1; }
  local id; id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$WORK/created")
  read -r code down peak_down < <(watched curl -s -o /dev/null -w '%{http_code} %{speed_download}\n' \
    -H "authorization: Bearer $token" "$api/attachments/$id/content")
  [ "$code" = 200 ] || { echo "download: $code" >&2; exit 1; }
  local started; started=$(date +%s.%N)
  local uploads=()
  for i in $(seq 1 "$PARALLEL"); do
    curl -s -o /dev/null -w '%{http_code}\n' -H "authorization: Bearer $token" -H 'Expect:' \
      -X POST -T "$WORK/part.pdf" "$api/documents/$doc/attachments?name=part-$i.pdf" > "$WORK/par-$i" &
    uploads+=($!)
  done
  wait "${uploads[@]}"
  local ended; ended=$(date +%s.%N)
  grep -qv 201 "$WORK"/par-* && { echo "a parallel upload failed" >&2; exit 1; }
  python3 - "$store" "$SIZE_MIB" "$up" "$down" "$idle" "$peak_up" "$peak_down" "$PARALLEL" "$PART" "$started" "$ended" <<'PY'
import sys
store, mib, up, down, idle, pu, pd, par, part, t0, t1 = sys.argv[1:]
print(f"{store:9} {mib} MiB: upload {float(up)/1e6:6.0f} MB/s, download {float(down)/1e6:6.0f} MB/s; "
      f"RSS idle {idle} MiB, peak {pu} MiB uploading, {pd} MiB downloading; "
      f"{par}×{part} MiB at once: {int(par)*int(part)*1048576/(float(t1)-float(t0))/1e6:.0f} MB/s")
PY
  kill "$PID"; wait "$PID" 2>/dev/null || true
}

run directory
run s3 STOA_STORAGE__S3_BUCKET=bench STOA_STORAGE__S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT" \
  STOA_STORAGE__S3_ACCESS_KEY_ID=bench STOA_STORAGE__S3_SECRET_ACCESS_KEY=bench
