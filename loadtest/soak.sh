#!/usr/bin/env bash
# Soak: RUNS back-to-back rounds of a mixed load against one node (release build, SQLite),
# and the node's memory once each round's clients have all left.
#
#   loadtest/soak.sh [RUNS] [MINUTES]          (default: 3 rounds of 2 minutes)
#
# e.g. loadtest/soak.sh 4 15    (an hour: four rounds of 15 minutes)
# Each round runs at once, for MINUTES: fan-out (2,000 subscribers, 20 broadcasts/s),
# presence churn (100 sockets, 50 joins/s), the REST CRUD mix (4 at a time) and Yjs
# (50 documents × 3 editors, 2 updates/s each). The load tool refreshes its tokens, so a
# round may outlast them. After a round every socket is closed; the node is idle once it
# holds no socket and no open document; RSS is read SETTLE seconds later (default 15,
# beyond the node's 5 s memory check). One line per round, then a summary line:
#   idle MB after each round, and the growth from the first idle to the last.
# LINGER=SECS reads the memory once more after that much longer idle.
# WRAP="heaptrack -o FILE" runs the node under a heap profiler.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; MINUTES=${2:-2}; SETTLE=${SETTLE:-15}
SECS=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
PORT=${PORT:-8090}
API="http://127.0.0.1:$PORT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa -p stoa-loadtest
BIN="$CARGO_TARGET_DIR/release"
DATA=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA"' EXIT
ulimit -n 20000

# One user per scenario drives each load as fast as asked: the per-user limits are lifted
# (the defaults would refuse it: that is what they are for).
STOA_SERVER__PORT=$PORT STOA_DATA_DIR="$DATA" STOA_DATABASE__URL="sqlite://$DATA/stoa.db" \
STOA_LOG__LEVEL=warn STOA_REALTIME__MAX_SOCKETS_PER_USER=1000000 \
STOA_REALTIME__MESSAGES_PER_SEC=1000000 STOA_REALTIME__MESSAGE_BURST=1000000 \
STOA_REALTIME__USER_MESSAGES_PER_SEC=1000000 STOA_REALTIME__USER_MESSAGE_BURST=1000000 \
STOA_REALTIME__TOPIC_BROADCASTS_PER_SEC=1000000 \
STOA_REALTIME__TOPIC_BROADCAST_BYTES_PER_SEC=1000000000 \
STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=100000 \
STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000 \
STOA_AUTH__JWT_SECRET="soak-secret-0123456789abcdef-GHIJKLMNOPQRSTUVWXYZ" \
  ${WRAP:-} "$BIN/stoa" > "$DATA/server.log" 2>&1 & SERVER=$!
until curl -sf "$API/readyz" | grep -q '"ok"'; do sleep 0.2; done
# Under a wrapper the node is the wrapper's child.
NODE=$(pgrep -P "$SERVER" -x stoa || echo "$SERVER")

metric() {
  curl -s "$API/metrics" | awk -v n="$1" '{ k = $1; sub(/\{.*/, "", k) } k == n { s += $2 } END { print s + 0 }'
}
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$NODE/status"; }
# What the node's heap holds, and what the allocator keeps free (MB).
heap_mb() {
  curl -s "$API/metrics" | awk -v s="$1" 'index($0, "stoa_process_heap_bytes{") == 1 && index($0, "state=\"" s "\"") { printf "%.1f", $2 / 1048576 }'
}
idle() {
  until [ "$(metric stoa_ws_sockets)" = 0 ] && [ "$(metric stoa_yjs_documents_open)" = 0 ]; do
    sleep 1
  done
  sleep "$SETTLE"
}

sleep "$SETTLE"
FRESH=$(rss_mb)
echo "fresh: ${FRESH} MB (heap in use $(heap_mb in_use) MB, free $(heap_mb free) MB)"
IDLES=()
for run in $(seq 1 "$RUNS"); do
  LT="$BIN/stoa-loadtest run"
  $LT fanout --api "$API" --subscribers 2000 --rate 20 --duration "$SECS" > "$DATA/fanout.$run" 2>/dev/null &
  A=$!
  $LT presence --api "$API" --connections 100 --rate 50 --duration "$SECS" > "$DATA/presence.$run" 2>/dev/null &
  B=$!
  $LT rest --api "$API" --concurrency 4 --duration "$SECS" > "$DATA/rest.$run" 2>/dev/null &
  C=$!
  $LT yjs --api "$API" --docs 50 --editors 3 --rate 2 --duration "$SECS" > "$DATA/yjs.$run" 2>/dev/null &
  D=$!
  PEAK=0
  while kill -0 $A $B $C $D 2>/dev/null; do
    now=$(rss_mb); PEAK=$(awk -v a="$PEAK" -v b="$now" 'BEGIN { print (b > a ? b : a) }')
    sleep 5
  done
  wait $A $B $C $D || true
  ops=$(for f in fanout presence rest yjs; do
    python3 -c "import json,sys; r=json.load(open('$DATA/$f.$run')); print('%s %d ops %d errors' % ('$f', r['ops'], r['errors']))" 2>/dev/null || echo "$f failed"
  done | paste -sd, -)
  idle
  IDLE=$(rss_mb)
  IDLES+=("$IDLE")
  echo "run $run: peak ${PEAK} MB, idle ${IDLE} MB (heap in use $(heap_mb in_use) MB, free $(heap_mb free) MB; $ops)"
done
if [ -n "${LINGER:-}" ]; then
  # Left idle longer: what the node lets go of with time (pool connections closing after
  # their idle timeout, revocations remembered for a while).
  sleep "$LINGER"
  echo "after ${LINGER} s more idle: $(rss_mb) MB (heap in use $(heap_mb in_use) MB, free $(heap_mb free) MB)"
fi
echo "idle MB after each run: ${IDLES[*]} (fresh ${FRESH}); growth first to last: $(awk -v a="${IDLES[0]}" -v b="${IDLES[-1]}" 'BEGIN { printf "%+.1f", b - a }') MB"
