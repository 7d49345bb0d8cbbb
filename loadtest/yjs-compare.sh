#!/usr/bin/env bash
# The same Yjs editing load against Stoa, the y-websocket 1.5 reference server and
# Hocuspocus 2.15 (npm, loadtest/node/), one after the other, in one table.
#
#   loadtest/yjs-compare.sh DOCS EDITORS COUNT RATE
#
# e.g. loadtest/yjs-compare.sh 200 3 30 20
# Columns: remote updates delivered per second, latency p50 and p99 (ms), server RSS per
# open document with its editors. Stoa stores every update (SQLite); the reference servers
# run as they come, in memory. TARGETS="stoa hocuspocus" picks a subset. GEN=rust drives
# every server from `stoa-loadtest yjs` (light enough not to be the bottleneck; it speaks
# Hocuspocus's framing with --hocuspocus 1) instead of the Node providers.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-200}; E=${2:-3}; N=${3:-30}; R=${4:-20}
PORT=${PORT:-8090}
[ -d loadtest/node/node_modules/@hocuspocus/server ] || (cd loadtest/node && npm ci --silent --no-audit --no-fund)
OUT=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -f "$OUT"' EXIT
ulimit -n 20000
# A `result` line from stoa-loadtest's output: target, delivered/s, p50, p99, (no RSS).
rust_result() {
  awk -v t="$1" '/^delivered/ {split($NF, a, "/"); rate = a[1]; sub(/^= /, "", rate); r = $(NF)}
    /^latency/ {for (i = 1; i <= NF; i++) {split($i, kv, "="); if (kv[1] == "p50") p50 = kv[2]; if (kv[1] == "p99") p99 = kv[2]}}
    END {sub(/\/s$/, "", r); printf "result %s %s %s %s 0\n", t, r, p50, p99}'
}
DEFAULT_TARGETS="stoa y-websocket hocuspocus"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
for target in ${TARGETS:-$DEFAULT_TARGETS}; do
  echo "== $target" >&2
  case $target in
    stoa)
      if [ "${GEN:-node}" = rust ]; then
        loadtest/yjs.sh "$D" "$E" "$N" "$R" 2>/dev/null | rust_result stoa >> "$OUT"
      else
        loadtest/yjs.sh "$D" "$E" "$N" "$R" 2>/dev/null | grep '^result' >> "$OUT" || echo "result stoa failed" >> "$OUT"
      fi ;;
    *)
      if [ "$target" = y-websocket ]; then
        HOST=127.0.0.1 PORT=$PORT node loadtest/node/node_modules/y-websocket-1/bin/server.js > /dev/null 2>&1 & SERVER=$!
      else
        node loadtest/node/hocuspocus-server.mjs "$PORT" > /dev/null 2>&1 & SERVER=$!
      fi
      until curl -s "http://127.0.0.1:$PORT/" > /dev/null 2>&1; do sleep 0.1; done
      if [ "${GEN:-node}" = rust ]; then
        "$CARGO_TARGET_DIR/release/stoa-loadtest" yjs --api "http://127.0.0.1:$PORT" --prefix "" \
          --hocuspocus "$([ "$target" = hocuspocus ] && echo 1 || echo 0)" \
          --docs "$(seq -s, -f "room%g" 1 "$D")" --editors "$E" --count "$N" --rate "$R" 2>/dev/null \
          | rust_result "$target" >> "$OUT"
      else
        PEER=$target node loadtest/node/yjs-bench.mjs "http://127.0.0.1:$PORT" "$D" "$E" "$N" "$R" "$SERVER" 2>/dev/null \
          | grep '^result' >> "$OUT" || echo "result $target failed" >> "$OUT"
      fi
      kill "$SERVER"; wait "$SERVER" 2>/dev/null || true ;;
  esac
  sleep 1
done
echo
echo "$D documents × $E editors × $N updates at $R/s each"
echo
echo "| server | remote updates/s | p50 ms | p99 ms | RSS per open document |"
echo "|---|---|---|---|---|"
awk '$3 == "failed" {printf "| %s | failed | | | |\n", $2; next}
     {printf "| %s | %d | %s | %s | %s |\n", $2, $3, $4, $5, ($6 > 0 ? $6 " B" : "")}' "$OUT"
