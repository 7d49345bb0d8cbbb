#!/usr/bin/env bash
# Document history benchmark: a release build on SQLite or PostgreSQL; a document of SIZE
# bytes written by a stock y-websocket client, VERSIONS named versions each after a small
# edit, then the version list, version reads and diffs timed one request at a time (N each,
# after 5 warm-ups), a restore while three editors type, and the storage the versions take.
#
#   loadtest/history.sh sqlite|postgres [SIZE] [VERSIONS] [N]
#
# e.g. loadtest/history.sh sqlite 1000000 1000 200
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite}; SIZE=${2:-1000000}; VERSIONS=${3:-1000}; N=${4:-200}
PORT=${PORT:-8092}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa
[ -d loadtest/node/node_modules/y-websocket ] || (cd loadtest/node && npm ci --silent --no-audit --no-fund)
DATA=$(mktemp -d)
PGDB=""
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$PGDB" ] && dropdb -h 127.0.0.1 -U postgres --if-exists "$PGDB" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
case "$DB" in
  sqlite) URL="sqlite://$DATA/stoa.db" ;;
  postgres)
    PGDB="stoa_bench_$RANDOM$RANDOM"
    createdb -h 127.0.0.1 -U postgres "$PGDB"
    URL="postgres://postgres@127.0.0.1:5432/$PGDB" ;;
  *) echo "usage: $0 sqlite|postgres [SIZE] [VERSIONS] [N]" >&2; exit 2 ;;
esac
export STOA_DATA_DIR="$DATA" STOA_DATABASE__URL="$URL" STOA_LOG__LEVEL=warn
export STOA_AUTH__PASSWORD_HASH_MEMORY_KIB=8192 STOA_AUTH__PASSWORD_HASH_ITERATIONS=1
export STOA_AUTH__ACCESS_TOKEN_TTL_SECS=86400
export STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000
export STOA_SERVER__PORT=$PORT
"$CARGO_TARGET_DIR/release/stoa" & SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"ok"'; do sleep 0.2; done
node loadtest/node/history-bench.mjs "http://127.0.0.1:$PORT" "$SIZE" "$VERSIONS" "$N" | tee "$DATA/out.jsonl"
DOC=$(tail -1 "$DATA/out.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin)['document'])")
Q="SELECT COUNT(*), SUM(base), SUM(LENGTH(delta)), COALESCE(SUM(LENGTH(text_z)), 0),
          (SELECT LENGTH(content) FROM documents WHERE id = $DOC),
          (SELECT SUM(LENGTH(data)) FROM document_updates WHERE document_id = $DOC)
   FROM document_versions WHERE document_id = $DOC"
case "$DB" in
  sqlite) ROW=$(sqlite3 -separator ' ' "$DATA/stoa.db" "$Q") ;;
  postgres) ROW=$(psql -h 127.0.0.1 -U postgres -d "$PGDB" -At -F ' ' -c "$Q") ;;
esac
read -r COUNT BASES DELTAS TEXTS DOC_CHARS LOG <<<"$ROW"
echo "{\"label\": \"storage\", \"versions\": $COUNT, \"whole_states\": $BASES, \"version_bytes\": $DELTAS, \"kept_text_bytes\": $TEXTS, \"document_chars\": $DOC_CHARS, \"update_log_bytes\": $LOG}"
echo "server RSS: $(ps -o rss= -p $SERVER) KiB"
