#!/usr/bin/env bash
# Reports and search benchmark: `stoa seed` builds one workspace (EVENTS events, DOCS
# documents, COMMENTS comments, 50 members, a year of history) on SQLite or PostgreSQL, then
# every report (JSON and CSV) and a set of searches are timed one request at a time against
# a release build.
#
#   loadtest/reports-search.sh sqlite|postgres [EVENTS] [DOCS] [COMMENTS] [N]
#
# e.g. loadtest/reports-search.sh sqlite 1000000 10000 50000 200
#      loadtest/reports-search.sh postgres 200000 100000 100000 200   (search over 100,000)
# Prints the seed's figures (rows written per second, the full-text index included) and one
# JSON line per request: p50/p90/p99/max in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite}; EVENTS=${2:-1000000}; DOCS=${3:-10000}; COMMENTS=${4:-50000}; N=${5:-200}
PORT=${PORT:-8091}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stoa-target}"
cargo build --release -q -p stoa
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
  *) echo "usage: $0 sqlite|postgres [EVENTS] [DOCS] [COMMENTS] [N]" >&2; exit 2 ;;
esac
export STOA_DATA_DIR="$DATA" STOA_DATABASE__URL="$URL" STOA_LOG__LEVEL=warn
export STOA_AUTH__PASSWORD_HASH_MEMORY_KIB=8192 STOA_AUTH__PASSWORD_HASH_ITERATIONS=1
export STOA_AUTH__ACCESS_TOKEN_TTL_SECS=86400
# One account measures hundreds of searches and reports a second: its allowance is lifted.
export STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000
SEED=$("$CARGO_TARGET_DIR/release/stoa" seed --events "$EVENTS" --documents "$DOCS" \
  --comments "$COMMENTS" 2>/dev/null)
echo "seed: $SEED"
echo "started: $(date -u +%T)"
field() { echo "$SEED" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
WS=$(field workspace_id); EMAIL=$(field admin_email); PASSWORD=$(field password)
STOA_SERVER__PORT=$PORT "$CARGO_TARGET_DIR/release/stoa" & SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"ok"'; do sleep 0.2; done
BASE="http://127.0.0.1:$PORT"
TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" |
  python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
# Search words from the first document: its most frequent word (common across the corpus,
# the vocabulary is skewed) and its least frequent one (rare).
FIRST=$(curl -sf "$BASE/api/v1/workspaces/$WS/documents?limit=1" -H "authorization: Bearer $TOKEN" |
  python3 -c "import json,sys; print(json.load(sys.stdin)['items'][0]['id'])")
read -r COMMON RARE <<<"$(curl -sf "$BASE/api/v1/documents/$FIRST" -H "authorization: Bearer $TOKEN" |
  python3 -c "
import json, sys, collections
words = json.load(sys.stdin)['content'].split()
c = collections.Counter(words).most_common()
print(c[0][0], c[-1][0])")"
YEAR_AGO=$(date -u -d '-365 days' +%Y-%m-%dT%H:%M:%SZ)
MONTH_AGO=$(date -u -d '-30 days' +%Y-%m-%dT%H:%M:%SZ)
R="/api/v1/workspaces/$WS/reports"
S="/api/v1/workspaces/$WS/search"
REPORTS=(
  "overview=$R/overview"
  "members=$R/members"
  "members.csv=$R/members"
  "documents-1000=$R/documents?limit=1000"
  "documents-1000.csv=$R/documents?limit=1000"
  "activity-day-year-berlin=$R/activity?bucket=day&tz=Europe/Berlin&from=$YEAR_AGO"
  "activity-day-year.csv=$R/activity?bucket=day&from=$YEAR_AGO"
  "activity-week-year-kolkata=$R/activity?bucket=week&tz=Asia/Kolkata&from=$YEAR_AGO"
  "activity-hour-month=$R/activity?bucket=hour&from=$MONTH_AGO"
)
# ONLY=search times the searches alone.
[ "${ONLY:-}" = search ] && REPORTS=()
node loadtest/node/http-bench.mjs "$BASE" "$TOKEN" "$N" \
  ${REPORTS[@]+"${REPORTS[@]}"} \
  "search-common=$S?q=$COMMON" \
  "search-rare=$S?q=$RARE" \
  "search-prefix=$S?q=${COMMON:0:3}*" \
  "search-prefix-2=$S?q=${COMMON:0:2}*" \
  "search-two-words=$S?q=$COMMON%20$RARE" \
  "search-all-workspaces=/api/v1/search?q=$RARE"
echo "rss_kib: $(ps -o rss= -p $SERVER)"
echo "finished: $(date -u +%T)"
