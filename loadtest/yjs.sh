#!/usr/bin/env bash
# Yjs editing benchmark: DOCS documents × EDITORS editors each inserting COUNT timestamped
# pieces at RATE per second through the stock y-websocket provider (loadtest/node/
# yjs-bench.mjs, one Node process), against a release build of Stoa on SQLite.
#
#   loadtest/yjs.sh DOCS EDITORS COUNT RATE
#
# e.g. loadtest/yjs.sh 200 3 30 20
# Prints remote updates delivered per second, latency percentiles, server RSS per open
# document and the rate at which updates were written. WRAP="heaptrack -o FILE" runs the
# server under a profiler (the RSS figures then include the profiler's own).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-200}; E=${2:-3}; N=${3:-30}; R=${4:-20}
PORT=${PORT:-8090}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa
[ -d loadtest/node/node_modules/y-websocket ] || (cd loadtest/node && npm ci --silent --no-audit --no-fund)
DATA=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT
ulimit -n 20000
# One user drives every editor, as fast as asked: the per-user and per-connection limits
# are lifted.
STOA_SERVER__PORT=$PORT STOA_DATA_DIR="$DATA" STOA_DATABASE__URL="sqlite://$DATA/stoa.db" \
STOA_LOG__LEVEL=warn STOA_REALTIME__MAX_SOCKETS_PER_USER=1000000 \
STOA_REALTIME__MESSAGES_PER_SEC=1000000 STOA_REALTIME__MESSAGE_BURST=1000000 \
STOA_REALTIME__USER_MESSAGES_PER_SEC=1000000 STOA_REALTIME__USER_MESSAGE_BURST=1000000 \
STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=1000 \
STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000 \
  ${WRAP:-} "$CARGO_TARGET_DIR/release/stoa" & SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"ok"'; do sleep 0.2; done
# PROCS=n splits the documents over n generator processes (each reports its own share;
# the memory figure is then left out). GEN=rust drives the same load from `stoa-loadtest
# yjs` instead (real Yjs updates from a yrs document per editor, latency read from the
# updates' bytes): a generator light enough not to be the bottleneck.
PROCS=${PROCS:-1}
if [ "${GEN:-node}" = rust ]; then
  cargo build --release -q -p stoa-loadtest
  eval "$("$CARGO_TARGET_DIR/release/stoa-loadtest" setup --api "http://127.0.0.1:$PORT")"
  WS=${TOPIC#workspace:}
  IDS=$(for d in $(seq 1 "$D"); do
    curl -s "http://127.0.0.1:$PORT/api/v1/workspaces/$WS/documents" -H "authorization: Bearer $TOKEN" \
      -H 'content-type: application/json' -d "{\"title\":\"D$d\"}" | sed -E 's/.*"id":([0-9]+).*/\1/'
    echo
  done | paste -sd, -)
  "$CARGO_TARGET_DIR/release/stoa-loadtest" yjs --api "http://127.0.0.1:$PORT" --token "$TOKEN" \
    --docs "$IDS" --editors "$E" --count "$N" --rate "$R"
elif [ "$PROCS" -eq 1 ]; then
  node loadtest/node/yjs-bench.mjs "http://127.0.0.1:$PORT" "$D" "$E" "$N" "$R" "$SERVER"
else
  for i in $(seq 1 "$PROCS"); do
    node loadtest/node/yjs-bench.mjs "http://127.0.0.1:$PORT" "$((D / PROCS))" "$E" "$N" "$R" \
      > "$DATA/gen.$i" 2>&1 &
  done
  wait $(jobs -p | grep -v "^$SERVER$") 2>/dev/null || true
  cat "$DATA"/gen.* | grep -E '^(ready|delivered)'
fi
echo "server CPU: $(awk '{print ($14 + $15) * 10}' "/proc/$SERVER/stat") ms in all;" \
  "peak RSS $(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status") KiB"
