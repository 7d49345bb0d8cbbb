#!/usr/bin/env bash
# Every `stoa-loadtest run` scenario against release builds on this machine, each report
# kept as JSON, and one table made from the reports (docs/BENCHMARKS.md "Load scenarios").
#
#   loadtest/scenarios.sh [OUT_DIR]        (default /tmp/stoa-scenarios)
#
# Single-node scenarios run against one node on SQLite; `cluster` against two nodes on
# PostgreSQL (127.0.0.1:5432, a fresh database) and a private redis-server. The limits a
# load test would trip as abuse (per-user sockets and message rates) are raised, as in
# fanout.sh; everything else is the default configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/stoa-scenarios}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa -p stoa-loadtest
BIN="$CARGO_TARGET_DIR/release"
ulimit -n 20000 || true
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

limits() {
  export STOA_LOG__LEVEL=warn \
    STOA_REALTIME__MESSAGES_PER_SEC=1000000 STOA_REALTIME__MESSAGE_BURST=1000000 \
    STOA_REALTIME__USER_MESSAGES_PER_SEC=1000000 STOA_REALTIME__USER_MESSAGE_BURST=1000000 \
    STOA_REALTIME__TOPIC_BROADCASTS_PER_SEC=1000000 \
    STOA_REALTIME__TOPIC_BROADCAST_BYTES_PER_SEC=1000000000 \
    STOA_REALTIME__MAX_SOCKETS_PER_USER=1000000 STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=100000 \
    STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000 \
    STOA_AUTH__JWT_SECRET="scenario-secret-0123456789abcdef-GHIJKLMNOPQRSTUV"
}

# start PORT [ENV=VALUE…]: a node in its own data directory; waits until it is ready.
start() {
  local port=$1; shift
  local dir; dir=$(mktemp -d)
  (limits; cd "$dir" && env "$@" STOA_SERVER__PORT="$port" "$BIN/stoa" >"$dir/log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$port/readyz" | grep -q '"ok"' && return 0
    sleep 0.1
  done
  echo "node on $port did not start: $(tail -5 "$dir/log")" >&2; exit 1
}

run() {
  local name=$1; shift
  echo "== $name $*" >&2
  "$BIN/stoa-loadtest" run "$name" "$@" --json "$OUT/$name.json" >/dev/null
}

start 18401
A=http://127.0.0.1:18401
run connect  --api $A --connections 10000 --concurrency 256
run fanout   --api $A --subscribers 5000 --rate 20 --duration 20
run presence --api $A --connections 500 --rate 500 --duration 20
run rest     --api $A --concurrency 16 --duration 20
run yjs      --api $A --docs 200 --editors 3 --rate 20 --duration 1.5
cleanup; PIDS=()

DB="stoa_scenarios_$$"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
RPORT=18499
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
PIDS+=($!)
sleep 0.3
for n in 0 1; do
  start $((18402 + n)) STOA_DATABASE__URL="postgres://postgres@127.0.0.1/$DB" \
    STOA_REDIS__URL="redis://127.0.0.1:$RPORT/" STOA_CLUSTER__NODE_ID="n$n"
done
run cluster --api http://127.0.0.1:18402,http://127.0.0.1:18403 --subscribers 5000 --rate 20 --duration 20
cleanup; PIDS=()
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE $DB WITH (FORCE)" >/dev/null || true

python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| scenario | load | ops | ops/s | errors | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["connect", "fanout", "presence", "rest", "yjs", "cluster"]:
    f = out / f"{name}.json"
    if not f.exists():
        continue
    r = json.loads(f.read_text())
    l = r["latency_us"]
    load = ", ".join(f"{k} {v}" for k, v in r["params"].items())
    ms = lambda us: f"{us / 1000:.2f}"
    print(f"| {name} | {load} | {r['ops']} | {r['ops_per_sec']:.0f} | {r['errors']} | "
          f"{ms(l['p50'])} | {ms(l['p99'])} | {ms(l['p999'])} | {ms(l['max'])} |")
PY
