#!/usr/bin/env bash
# ab_pair.sh BIN_A BIN_B DIR_A DIR_B [RUNS] [QUERIES]: ignis against ignis on the same data.
#
# Starts BIN_A on DIR_A (port 19301) and BIN_B on DIR_B (port 19302), two copies of one
# post-ingest data dir (each server writes to its own), then runs every query of QUERIES
# (default ../shared/bench/queries_dashboard.txt) once per server as a warm-up and RUNS times
# (default 15) per server, alternating which server goes first, and prints the median latency
# per query and server. Instant queries run at END, range queries over the 6h before END at a
# 60 s step (END defaults to the 100k bench dataset's last full minute). Both servers are
# stopped at the end. The second server of a pair has measured ~5% faster whichever binary it
# runs: run each pair both ways.
set -euo pipefail
A=$1; B=$2; DA=$3; DB=$4; RUNS=${5:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QF=${6:-$ROOT/../shared/bench/queries_dashboard.txt}
END=${END:-1795766340}
CONF=$(mktemp)
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$CONF"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -f "$CONF"; }
trap cleanup EXIT
for x in "$A $DA 19301" "$B $DB 19302"; do
  read -r bin dir port <<< "$x"
  setsid "$bin" server --config.file="$CONF" --storage.tsdb.path="$dir" \
    --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$port \
    > "$dir.ab.log" 2>&1 < /dev/null &
  pids+=($!)
done
for port in 19301 19302; do
  until curl -sf 127.0.0.1:$port/-/ready > /dev/null; do sleep 0.5; done
done
sleep 2
python3 - "$RUNS" "$QF" "$END" <<'PY'
import sys, time, http.client, urllib.parse, statistics
runs, qfile, end = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ports = (19301, 19302)
conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in ports}
def run(p, kind, q):
    if kind == "range":
        body, path = {"query": q, "start": end - 21600, "end": end, "step": 60}, "/api/v1/query_range"
    else:
        body, path = {"query": q, "time": end}, "/api/v1/query"
    t0 = time.perf_counter()
    conns[p].request("POST", path, body=urllib.parse.urlencode(body),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conns[p].getresponse(); d = r.read()
    assert r.status == 200, d[:200]
    return (time.perf_counter() - t0) * 1000
tot = {p: 0.0 for p in ports}
for line in open(qfile):
    if not line.strip() or line.startswith("#"):
        continue
    kind, name, q = [x.strip() for x in line.split("|", 2)]
    for p in ports:
        run(p, kind, q)
    lat = {p: [] for p in ports}
    for i in range(runs):
        for p in (ports if i % 2 == 0 else ports[::-1]):
            lat[p].append(run(p, kind, q))
    a, b = (statistics.median(lat[p]) for p in ports)
    tot[19301] += a; tot[19302] += b
    print("%-22s %-7s A %8.2f  B %8.2f  B/A %.2f" % (name, kind, a, b, b / a))
print("total A %.1f B %.1f" % (tot[19301], tot[19302]))
PY
