#!/usr/bin/env bash
# Peak resident memory of each dashboard query, one query at a time, on a server restarted on a
# copy of a data dir: before each query the kernel's peak (VmHWM) is reset through
# /proc/PID/clear_refs, the query runs twice, and the new peak is printed beside the RSS before.
#
#   bench/query_peak_rss.sh DATA_DIR CONFIG INSTANT_TIME RANGE_START RANGE_END
#
# Env: IGNIS_BIN (default <checkout>/target/release/ignis), PORT (19412), STEP (60),
#      QUERIES (default ../shared/bench/queries_dashboard.txt). Numbers are KiB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$1; CFG=$2; T=$3; S=$4; E=$5
BIN=${IGNIS_BIN:-$ROOT/target/release/ignis}; PORT=${PORT:-19412}; STEP=${STEP:-60}
QUERIES=${QUERIES:-$ROOT/../shared/bench/queries_dashboard.txt}
D=$(mktemp -d); cp -r "$SRC/." "$D"
"$BIN" server --config.file="$CFG" --storage.tsdb.path="$D" --storage.tsdb.retention.time=100y \
  --web.listen-address=127.0.0.1:$PORT > "$D.log" 2>&1 & P=$!
trap 'kill $P 2>/dev/null; wait $P 2>/dev/null; rm -rf "$D" "$D.log"' EXIT
for _ in $(seq 400); do curl -sf 127.0.0.1:$PORT/-/ready >/dev/null && break; sleep 0.5; done
kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/$P/status; }
echo "ready: rss $(kb VmRSS) anon $(kb RssAnon) hwm $(kb VmHWM)"
grep -v '^#' "$QUERIES" | grep '|' | while IFS='|' read -r kind name q; do
  kind=$(echo $kind); name=$(echo $name); q=$(echo "$q" | sed 's/^ *//')
  echo 5 > /proc/$P/clear_refs; before=$(kb VmRSS)
  for _ in 1 2; do
    if [ "$kind" = instant ]; then
      curl -s --data-urlencode "query=$q" --data-urlencode time=$T 127.0.0.1:$PORT/api/v1/query -o /dev/null
    else
      curl -s --data-urlencode "query=$q" --data-urlencode start=$S --data-urlencode end=$E \
        --data-urlencode step=$STEP 127.0.0.1:$PORT/api/v1/query_range -o /dev/null
    fi
  done
  printf "%-22s %-8s rss_before %7d  hwm %7d (+%6d)  rss_after %7d anon %7d\n" "$name" "$kind" \
    "$before" "$(kb VmHWM)" $(( $(kb VmHWM) - before )) "$(kb VmRSS)" "$(kb RssAnon)"
done
