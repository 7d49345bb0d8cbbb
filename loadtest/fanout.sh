#!/usr/bin/env bash
# Fan-out benchmark: N sockets join one workspace topic, one sender broadcasts timestamped
# messages, the generator reports deliveries/s and latency percentiles, and the server's RSS
# is read before and after the sockets join.
#
#   loadtest/fanout.sh CONNECTIONS COUNT RATE [SIZE]
#
# e.g. loadtest/fanout.sh 10000 50 5      (one broadcast at a time reaching 10,000)
#      loadtest/fanout.sh 10000 3000 100  (sustained fan-out)
# Builds release binaries first. Each generator process (one thread) holds an even share of
# at most 9,000 sockets and uses its own source address (127.0.0.2, 127.0.0.3, …): a process
# may hold 20,000 files. PROCS=n sets the number of generator processes.
# PRESENCE=1 joins with presence (every join is a presence_diff to everyone joined).
# The generator is one user broadcasting as fast as asked on one topic, so the server runs
# with the per-user, per-topic and presence limits lifted (the defaults would refuse it:
# that is what they are for).
# FLOOR=1 runs the same measurement against `stoa-loadtest floor` instead of Stoa: a plain
# program writing each frame straight to every socket, i.e. what the machine costs.
# VIA=rest sends through the publish API (POST …/broadcast, SENDERS keep-alive connections)
# instead of a socket.
# PEER=ws or PEER=socketio runs it against a Node reference server (loadtest/node: the `ws`
# package, or Socket.IO 4 with the generator speaking Engine.IO), installed with npm ci.
# The last line, `result …`, is what loadtest/compare.sh tabulates.
set -euo pipefail
cd "$(dirname "$0")/.."
# metric NAME [BASE_URL]: the sum of a metric's series (every series carries a node label,
# some more labels).
metric() {
  curl -s "${2:-$API}/metrics" | awk -v n="$1" '{ k = $1; sub(/\{.*/, "", k) } k == n { s += $2 } END { print s + 0 }'
}
N=${1:-10000}; COUNT=${2:-50}; RATE=${3:-5}; SIZE=${4:-64}
PORT=${PORT:-8090}
# BIN=DIR runs the binaries already in DIR (e.g. two builds compared in pairs) without
# building.
if [ -z "${BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
  cargo build --release -q -p stoa -p stoa-loadtest
  BIN="$CARGO_TARGET_DIR/release"
fi
DATA=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT
ulimit -n 20000

if [ -n "${FLOOR:-}" ]; then
  # The reference: no Stoa, a plain program writing straight to the sockets.
  "$BIN/stoa-loadtest" floor --port "$PORT" --connections "$N" --count "$COUNT" --rate "$RATE" \
    --size "$SIZE" > "$DATA/floor" 2>&1 & SERVER=$!
  until grep -q listening "$DATA/floor"; do sleep 0.1; done
  API="http://127.0.0.1:$PORT"; TOKEN=none; TOPIC=workspace:1
elif [ -n "${PEER:-}" ]; then
  [ -d loadtest/node/node_modules ] || (cd loadtest/node && npm ci --silent --no-audit --no-fund)
  node "loadtest/node/$PEER-server.mjs" "$PORT" > "$DATA/peer" 2>&1 & SERVER=$!
  until grep -q listening "$DATA/peer"; do sleep 0.1; done
  API="http://127.0.0.1:$PORT"; TOKEN=none; TOPIC=workspace:1
  [ "$PEER" = socketio ] && PROTOCOL=(--protocol socketio)
else
  # NODES > 1 starts that many servers on PORT, PORT+1, … sharing one database and a
  # private redis-server (on PORT+1000) as their bus; the sockets are spread over them and
  # the sender's broadcasts reach the other nodes through Redis.
  # BUS=rabbitmq makes that bus a private rabbitmq-server instead (AMQP on PORT+1000, its
  # own node name and directories, no plugins).
  SERVERS=()
  if [ "${NODES:-1}" -gt 1 ]; then
    RPORT=$((PORT + 1000))
    # (A previous run's bus may take a moment to go.)
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null || break; sleep 0.2; done
    if (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null; then
      echo "port $RPORT (the bus's) is taken: set PORT" >&2; exit 1
    fi
    if [ "${BUS:-redis}" = rabbitmq ]; then
      echo '[].' > "$DATA/enabled_plugins"; : > "$DATA/rabbitmq-env.conf"
      HOME="$DATA" RABBITMQ_NODENAME="stoa-fanout-$$@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$RPORT" RABBITMQ_DIST_PORT=$((PORT + 2000)) \
      RABBITMQ_CONF_ENV_FILE="$DATA/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$DATA/rabbitmq" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$DATA/advanced.config" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$DATA/enabled_plugins" RABBITMQ_MNESIA_BASE="$DATA/mnesia" \
      RABBITMQ_LOG_BASE="$DATA/log" RABBITMQ_PID_FILE="$DATA/rabbit.pid" \
        setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$DATA/rabbit.out" 2>&1 & BROKER_GROUP=$!
      trap 'kill $(jobs -p) 2>/dev/null || true; kill -KILL -- -$BROKER_GROUP 2>/dev/null || true; rm -rf "$DATA"' EXIT
      until (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null; do sleep 0.2; done
      BROKER=$(pgrep -f "beam.smp.*-home $DATA " | head -1 || true)
      export STOA_BUS__URL="amqp://guest:guest@127.0.0.1:$RPORT/%2f"
    else
      redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$DATA" >/dev/null 2>&1 & BROKER=$!
      until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done
      export STOA_BUS__URL="redis://127.0.0.1:$RPORT/"
    fi
  fi
  for n in $(seq 0 $(( ${NODES:-1} - 1 ))); do
    STOA_SERVER__PORT=$((PORT + n)) STOA_DATA_DIR="$DATA" STOA_LOG__LEVEL=warn \
    STOA_REALTIME__MESSAGES_PER_SEC=1000000 STOA_REALTIME__MESSAGE_BURST=1000000 \
    STOA_REALTIME__USER_MESSAGES_PER_SEC=1000000 STOA_REALTIME__USER_MESSAGE_BURST=1000000 \
    STOA_REALTIME__TOPIC_BROADCASTS_PER_SEC=1000000 \
    STOA_REALTIME__TOPIC_BROADCAST_BYTES_PER_SEC=1000000000 \
    STOA_REALTIME__MAX_PRESENCE_METAS=20000 STOA_REALTIME__MAX_PRESENCE_META_BYTES=64 \
    STOA_REALTIME__OUTBOUND_QUEUE_BYTES=8388608 \
    STOA_REALTIME__MAX_SOCKETS_PER_USER=1000000 STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=1000 \
    STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000 \
      "$BIN/stoa" & SERVERS+=($!)
    until curl -sf "http://127.0.0.1:$((PORT + n))/readyz" | grep -q '"ok"'; do sleep 0.2; done
  done
  SERVER=${SERVERS[0]}
  API="http://127.0.0.1:$PORT"
  eval "$("$BIN/stoa-loadtest" setup --api "$API")"
fi
rss() { awk '/VmRSS/ {print $2}' "/proc/${1:-$SERVER}/status"; }
BEFORE=$(rss)
if [ "${NODES:-1}" -gt 1 ]; then
  for pid in "${SERVERS[@]}"; do RSS0[$pid]=$(rss "$pid"); done
fi

# Even shares of at most 9,000 sockets per generator process.
PROCS=${PROCS:-$(( (N + 8999) / 9000 ))}; PER=$(( (N + PROCS - 1) / PROCS )); LEFT=$N; PIDS=()
for i in $(seq 1 "$PROCS"); do
  C=$(( LEFT < PER ? LEFT : PER )); LEFT=$(( LEFT - C ))
  NODE_API="http://127.0.0.1:$(( PORT + (i - 1) % ${NODES:-1} ))"
  "$BIN/stoa-loadtest" hold --api "$NODE_API" --token "$TOKEN" --topic "$TOPIC" --connections "$C" \
    --source "127.0.0.$((i + 1))" --expect "$COUNT" --out "$DATA/lat.$i" ${PRESENCE:+--presence 1} \
    --linger-ms 3000 \
    ${PROTOCOL[@]+"${PROTOCOL[@]}"} \
    > "$DATA/hold.$i" 2>&1 &
  PIDS+=($!)
done
for i in $(seq 1 "$PROCS"); do
  until grep -q '^ready' "$DATA/hold.$i"; do sleep 0.2; done
  cat "$DATA/hold.$i"
done
AFTER=$(rss)
if [ -n "${FLOOR:-}${PEER:-}" ]; then
  HELD=$(cat "$DATA"/hold.* | awk '/^ready/ {s += $2} END {print s}'); else
  HELD=$(metric stoa_ws_connections); fi
if [ "${NODES:-1}" -gt 1 ]; then
  TOTAL=0
  for n in $(seq 0 $(( NODES - 1 ))); do
    pid=${SERVERS[$n]}; after=$(rss "$pid")
    held=$(metric stoa_ws_connections "http://127.0.0.1:$((PORT + n))")
    TOTAL=$(( TOTAL + held ))
    echo "node $n: RSS ${RSS0[$pid]} KiB idle, ${after} KiB with ${held} sockets joined" \
         "= $(( (after - RSS0[$pid]) * 1024 / (held > 0 ? held : 1) )) bytes per connection"
  done
  echo "joined sockets on all nodes: $TOTAL"
fi
[ -n "${PRESENCE:-}" ] && echo "frames queued by the server so far:" \
  "$(metric stoa_ws_frames_out_total)"
echo "server RSS: ${BEFORE} KiB idle, ${AFTER} KiB with ${HELD} sockets joined" \
     "= $(( (AFTER - BEFORE) * 1024 / (HELD > 0 ? HELD : 1) )) bytes per connection"

if [ -n "${STRACE:-}" ]; then
  timeout -s INT 3 strace -c -f -p "$SERVER" -o "$STRACE" 2>/dev/null &
fi
if [ -n "${PERF:-}" ]; then
  perf record -F ${PERF_FREQ:-999} -g -o "$PERF" -p "$SERVER" 2>/dev/null & PERFPID=$!
  sleep 0.5
fi
cpu() { if [ "${NODES:-1}" -gt 1 ]; then for pid in "${SERVERS[@]}"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | awk '{s += $1} END {print s}'; else awk '{print $14 + $15}' "/proc/$SERVER/stat"; fi; }
CPU0=$(cpu)
bcpu() { [ -n "${BROKER:-}" ] && awk '{print $14 + $15}' "/proc/$BROKER/stat" || echo 0; }
BCPU0=$(bcpu)
[ -n "${FLOOR:-}" ] ||
  "$BIN/stoa-loadtest" send --api "$API" --token "$TOKEN" --topic "$TOPIC" --count "$COUNT" --rate "$RATE" --size "$SIZE" \
    ${PROTOCOL[@]+"${PROTOCOL[@]}"} ${VIA:+--via "$VIA" --senders "${SENDERS:-4}"}
# The server's CPU is read once every generator has had its last delivery, before their
# sockets close: the disconnections are no part of the fan-out (and the floor program never
# handles them).
for i in $(seq 1 "$PROCS"); do
  until grep -q '^done receiving' "$DATA/hold.$i" || ! kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null; do
    sleep 0.02
  done
done
CPU1=$(cpu)
BCPU1=$(bcpu)
[ -n "${PERF:-}" ] && { kill -INT "$PERFPID"; wait "$PERFPID" || true; }
for p in "${PIDS[@]}"; do wait "$p" || true; done
for i in $(seq 1 "$PROCS"); do tail -n 3 "$DATA/hold.$i"; done
echo "all generators:"
"$BIN/stoa-loadtest" report "$DATA"/lat.* | tee "$DATA/report"
echo "server CPU during the broadcasts: $(( (CPU1 - CPU0) * 10 )) ms${NODES:+ (all nodes)}"
[ -n "${BROKER:-}" ] && echo "bus (${BUS:-redis}) CPU during the broadcasts: $(( (BCPU1 - BCPU0) * 10 )) ms"
if [ "${NODES:-1}" -gt 1 ]; then
  for n in $(seq 0 $(( NODES - 1 ))); do
    m=$(curl -s "http://127.0.0.1:$((PORT + n))/metrics" \
      | sed -E 's/,node="[^"]*"//; s/\{node="[^"]*"\}//; s/\{node="[^"]*",/{/')
    echo "node $n: bus messages out $(echo "$m" | awk '$1 == "stoa_bus_messages_out_total" {print $2}')," \
         "in $(echo "$m" | awk '$1 == "stoa_bus_messages_in_total" {print $2}');" \
         "lag: $(echo "$m" | awk '$1 == "stoa_bus_lag_seconds_sum" {s = $2} $1 == "stoa_bus_lag_seconds_count" {c = $2}
           /^stoa_bus_lag_seconds_bucket/ {print}' | tr '\n' ' ' | sed 's/stoa_bus_lag_seconds_bucket//g')"
  done
fi
[ -n "${PRESENCE:-}" ] && echo "frames queued by the server in all:" \
  "$(metric stoa_ws_frames_out_total)"
[ -n "${FLOOR:-}${PEER:-}" ] ||
  echo "server RSS after the run: $(rss) KiB, peak $(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status") KiB; slow consumers: $(metric stoa_ws_slow_consumers_total)"
# One line for loadtest/compare.sh: deliveries/s (all generators), p50 and p99 (ms), server
# RSS per joined socket (bytes), server CPU per delivery (µs).
TARGET=${PEER:-$([ -n "${FLOOR:-}" ] && echo floor || echo stoa)}
cat "$DATA"/hold.* | awk -v t="$TARGET" -v rss="$(( (AFTER - BEFORE) * 1024 / (HELD > 0 ? HELD : 1) ))" \
  -v cpu="$(( (CPU1 - CPU0) * 10 ))" -v lat="$(cat "$DATA/report")" '
  /^held/ {got += $4; rate += $(NF - 1)}
  END {
    split(lat, f, /[ =]/); for (i in f) { if (f[i] == "p50") p50 = f[i + 1]; if (f[i] == "p99") p99 = f[i + 1] }
    printf "result %s %.0f %s %s %d %.2f\n", t, rate, p50, p99, rss, (got > 0 ? cpu * 1000 / got : 0)
  }'
