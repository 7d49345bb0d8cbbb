#!/usr/bin/env bash
# The same fan-out load against Stoa, the floor program, and the Node reference servers
# (`ws` and Socket.IO 4 from npm, started here), one after the other, in one table.
#
#   loadtest/compare.sh CONNECTIONS COUNT RATE [SIZE]
#
# e.g. loadtest/compare.sh 5000 100 100     (5,000 subscribers × 100 messages at 100/s)
#      loadtest/compare.sh 10000 50 5       (one broadcast at a time to 10,000)
# Each run is loadtest/fanout.sh with FLOOR=1 or PEER=…; TARGETS="stoa ws" picks a subset.
# Columns: deliveries/s over all generators, latency from the sender's timestamp to the
# subscriber (p50, p99), server RSS per joined idle socket, server CPU per delivery.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}; COUNT=${2:-100}; RATE=${3:-100}; SIZE=${4:-64}
LOGS=$(mktemp -d)
OUT="$LOGS/results"
trap 'rm -rf "$LOGS"' EXIT
for target in ${TARGETS:-stoa floor ws socketio}; do
  case $target in
    stoa) env=() ;;
    floor) env=(FLOOR=1) ;;
    *) env=("PEER=$target") ;;
  esac
  echo "== $target" >&2
  env ${env[@]+"${env[@]}"} loadtest/fanout.sh "$N" "$COUNT" "$RATE" "$SIZE" > "$LOGS/$target" 2>&1 || true
  grep -E '^(ready|held|latency|server)' "$LOGS/$target" >&2 || true
  grep '^result ' "$LOGS/$target" >> "$OUT" || echo "result $target failed" >> "$OUT"
  sleep 2 # the port and the sockets' TIME_WAIT
done
echo
echo "$N subscribers × $COUNT messages at $RATE/s, $SIZE-byte payloads"
echo
echo "| server | delivered/s | p50 ms | p99 ms | RSS per socket | CPU per delivery |"
echo "|---|---|---|---|---|---|"
awk '$3 == "failed" {printf "| %s | failed | | | | |\n", $2; next}
     {printf "| %s | %d | %s | %s | %d B | %s µs |\n", $2, $3, $4, $5, $6, $7}' "$OUT"
