#!/usr/bin/env bash
# LongPoll beside WebSocket: N stock phoenix.js clients on each transport on one topic, a
# backend publishing COUNT timestamped messages at RATE/s through the publish API, the
# delivery latency of each transport (loadtest/node/longpoll-bench.mjs).
#
#   loadtest/longpoll.sh [N] [COUNT] [RATE]          # one node (SQLite)
#   NODES=2 loadtest/longpoll.sh [N] [COUNT] [RATE]  # two nodes and a private Redis behind
#                                                    # HAProxy, round robin: most LongPoll
#                                                    # requests reach the node that does not
#                                                    # hold their session and are relayed
# Release build; the per-user socket and message limits are lifted (one user holds every
# client). Prints the two latency lines and the server's CPU during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}; COUNT=${2:-200}; RATE=${3:-20}
PORT=${PORT:-8092}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
[ -n "${BIN:-}" ] || { cargo build --release -q -p stoa; BIN="$CARGO_TARGET_DIR/release"; }
[ -d loadtest/node/node_modules/phoenix ] || (cd loadtest/node && npm ci --silent --no-audit --no-fund)
DATA=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT
ulimit -n 20000
export STOA_DATA_DIR="$DATA" STOA_LOG__LEVEL=warn \
  STOA_REALTIME__MAX_SOCKETS_PER_USER=100000 \
  STOA_REALTIME__USER_MESSAGES_PER_SEC=1000000 STOA_REALTIME__USER_MESSAGE_BURST=1000000 \
  STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000 \
  STOA_AUTH__PASSWORD_HASH_MEMORY_KIB=8192 STOA_AUTH__PASSWORD_HASH_ITERATIONS=1
SERVERS=()
if [ "${NODES:-1}" -gt 1 ]; then
  RPORT=$((PORT + 1000))
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DATA" >/dev/null 2>&1 &
  until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done
  export STOA_BUS__URL="redis://127.0.0.1:$RPORT/"
  BACKENDS=""
  for n in $(seq 1 "$NODES"); do
    STOA_SERVER__PORT=$((PORT + n)) STOA_CLUSTER__NODE_ID="n$n" "$BIN/stoa" & SERVERS+=($!)
    until curl -sf "http://127.0.0.1:$((PORT + n))/readyz" | grep -q '"ok"'; do sleep 0.2; done
    BACKENDS="$BACKENDS    server n$n 127.0.0.1:$((PORT + n))"$'\n'
  done
  cat > "$DATA/haproxy.cfg" <<CFG
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend stoa
    bind 127.0.0.1:$PORT
    http-request deny deny_status 403 if { req.hdr(upgrade) -i websocket }
    default_backend nodes
backend nodes
    balance roundrobin
$BACKENDS
CFG
  haproxy -f "$DATA/haproxy.cfg" -db >/dev/null 2>&1 &
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.1; done
  # The WebSocket clients go to the first node directly (the proxy refuses upgrades).
  LP_BASE="http://127.0.0.1:$PORT"; WS_BASE="http://127.0.0.1:$((PORT + 1))"
else
  STOA_SERVER__PORT=$PORT "$BIN/stoa" & SERVERS+=($!)
  until curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"ok"'; do sleep 0.2; done
  LP_BASE="http://127.0.0.1:$PORT"; WS_BASE="$LP_BASE"
fi
cpu() { for pid in "${SERVERS[@]}"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | awk '{s += $1} END {print s}'; }
CPU0=$(cpu)
node loadtest/node/longpoll-bench.mjs "$LP_BASE" "$N" "$COUNT" "$RATE" "$WS_BASE"
echo "server CPU during the run (joins included): $(( ($(cpu) - CPU0) * 10 )) ms${NODES:+ (all nodes)}"
