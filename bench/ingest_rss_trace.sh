#!/usr/bin/env bash
# ingest_rss_trace.sh BIN DATA [OUT]: one ignis ingest of a gen_rw.py dataset, with the server's
# VmHWM, VmRSS and RssAnon (KiB) sampled every 0.25 s into OUT.rss (default /tmp/ingest_trace).
#
# Starts BIN on a fresh data dir (port 19305), replays DATA with replay.py (4 workers), waits
# 20 s, stops the server and deletes the data dir. Prints the highest VmHWM and the last
# sample. Compares two builds' ingest memory in ~1 minute each on the 100k dataset, where
# measure.py's "RSS peak to settle" takes a full run. ENVS="K=V ..." is passed to the server.
set -euo pipefail
BIN=$1; DATA=$2; OUT=${3:-/tmp/ingest_trace}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
PY=${BENCH_PY:-python3}
D=$(mktemp -d)
CONF=$D/ignis.yml
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$CONF"
setsid env ${ENVS:-} "$BIN" server --config.file="$CONF" --storage.tsdb.path="$D/data" \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:19305 \
  --web.enable-remote-write-receiver > "$OUT.log" 2>&1 < /dev/null &
P=$!
trap 'kill $P 2>/dev/null || true; rm -rf "$D"' EXIT
until curl -sf 127.0.0.1:19305/-/ready > /dev/null; do sleep 0.3; done
( while kill -0 $P 2>/dev/null; do
    echo "$(date +%s.%N | cut -c1-13) $(awk '/VmHWM|VmRSS|RssAnon/{printf "%s ", $2}' /proc/$P/status 2>/dev/null)"
    sleep 0.25
  done ) > "$OUT.rss" &
"$PY" "$BENCH/replay.py" http://127.0.0.1:19305/api/v1/write "$DATA" --workers 4 --pid $P \
  --quiet --json "$OUT.replay.json" > /dev/null
sleep 20
kill $P; wait $P || true
echo "highest (time VmHWM VmRSS RssAnon KiB): $(sort -k2 -n "$OUT.rss" | tail -1)"
echo "last: $(tail -1 "$OUT.rss")"
