#!/usr/bin/env bash
# Webhook delivery lag: a release build on SQLite or PostgreSQL, one endpoint (the tests'
# Python receiver, which checks every signature) registered on a workspace that is written
# at RATE events per second for SECONDS; the receiver notes when each event arrived, and the
# lag is that time less the event's own `at` (the commit's clock, the same machine).
#
#   loadtest/webhooks.sh sqlite|postgres [RATE] [SECONDS]
#
# e.g. loadtest/webhooks.sh postgres 1000 20
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite}; RATE=${2:-1000}; SECONDS_=${3:-20}
PORT=${PORT:-8093}
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
  *) echo "usage: $0 sqlite|postgres [RATE] [SECONDS]" >&2; exit 2 ;;
esac
export STOA_DATA_DIR="$DATA" STOA_DATABASE__URL="$URL" STOA_LOG__LEVEL=warn
export STOA_AUTH__PASSWORD_HASH_MEMORY_KIB=8192 STOA_AUTH__PASSWORD_HASH_ITERATIONS=1
export STOA_HTTP__USER_REQUESTS_PER_SEC=1000000 STOA_HTTP__USER_REQUEST_BURST=1000000
export STOA_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true STOA_SERVER__PORT=$PORT
"$CARGO_TARGET_DIR/release/stoa" & 
until curl -sf "http://127.0.0.1:$PORT/readyz" | grep -q '"ok"'; do sleep 0.2; done
API="http://127.0.0.1:$PORT"
SECRET=a-webhook-secret-of-the-benchmark
python3 tests/webhooks/receiver.py --secret "$SECRET" > "$DATA/received" &
until [ -s "$DATA/received" ]; do sleep 0.1; done
RPORT=$(head -1 "$DATA/received" | python3 -c "import json,sys; print(json.load(sys.stdin)['port'])")
TOKEN=$(curl -s -X POST "$API/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password here","display_name":"bench"}' |
  python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
WS=$(curl -s -X POST "$API/api/v1/workspaces" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"name":"Bench"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
curl -s -o /dev/null -X POST "$API/api/v1/workspaces/$WS/webhooks" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d "{\"url\":\"http://127.0.0.1:$RPORT/hook\",\"secret\":\"$SECRET\"}"
node loadtest/node/webhook-writer.mjs "$API" "$TOKEN" "$WS" "$RATE" "$SECONDS_"
WANT=$((RATE * SECONDS_))
for _ in $(seq 1 600); do
  [ "$(grep -c '"status": 200' "$DATA/received")" -ge "$WANT" ] && break
  sleep 0.1
done
python3 - "$DATA/received" "$WANT" <<'PY'
import json, sys, datetime
lags, signed, offsets = [], True, []
for line in open(sys.argv[1]).read().splitlines()[1:]:
    v = json.loads(line)
    if v["status"] != 200:
        continue
    signed &= v["signed"]
    offsets.append(v["offset"])
    at = datetime.datetime.fromisoformat(v["body"]["at"].replace("Z", "+00:00")).timestamp()
    lags.append((v["arrived"] - at) * 1000)
lags.sort()
pct = lambda p: round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 1)
print(json.dumps({"delivered": len(lags), "wanted": int(sys.argv[2]), "in_order": offsets == sorted(offsets),
                  "all_signed": signed, "lag_p50_ms": pct(50), "lag_p99_ms": pct(99), "lag_max_ms": round(lags[-1], 1)}))
PY
