#!/usr/bin/env bash
# Scrape benchmark (issue 5): ignis and Prometheus 2.42 scrape the same local targets AT THE
# SAME TIME (both servers run side by side against one targets process), by default
# 1,000 targets x 1,000 series every 15 s. Reports, for each server, CPU seconds per minute of
# scraping and RSS (mean and max over the measured window), plus scrape health at the end.
#
#   cargo build --release -p web                          # target/release/ignis
#   cargo build --release -p web --example scrape_bench_targets # the targets program
#   bench/scrape_targets.sh
#
# Env:
#   IGNIS_BIN    ignis binary (default <checkout>/target/release/ignis)
#   PROM_BIN     Prometheus (default /usr/bin/prometheus, Debian's 2.42)
#   TARGETS_BIN  the targets program (default target/release/examples/scrape_bench_targets, else the
#                debug build)
#   TARGETS (1000) SERIES (1000) INTERVAL (15s) TIMEOUT (10s)
#   WARMUP (60)  seconds after start before measuring (first scrapes create the series)
#   DURATION (300) measured seconds
#   BASE_PORT (20000) targets listen on BASE_PORT..BASE_PORT+TARGETS-1 of 127.0.0.1
#   IGNIS_PORT (19391) PROM_PORT (19390)
#   OUT          output dir (default /tmp/scrape_bench_<date>): configs, data dirs, logs,
#                rss_<server>.txt samples, results.txt
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IGNIS_BIN=${IGNIS_BIN:-$ROOT/target/release/ignis}
PROM_BIN=${PROM_BIN:-/usr/bin/prometheus}
if [[ -z "${TARGETS_BIN:-}" ]]; then
  TARGETS_BIN=$ROOT/target/release/examples/scrape_bench_targets
  [[ -x $TARGETS_BIN ]] || TARGETS_BIN=$ROOT/target/debug/examples/scrape_bench_targets
fi
TARGETS=${TARGETS:-1000}
SERIES=${SERIES:-1000}
INTERVAL=${INTERVAL:-15s}
TIMEOUT=${TIMEOUT:-10s}
WARMUP=${WARMUP:-60}
DURATION=${DURATION:-300}
BASE_PORT=${BASE_PORT:-20000}
IGNIS_PORT=${IGNIS_PORT:-19391}
PROM_PORT=${PROM_PORT:-19390}
OUT=${OUT:-/tmp/scrape_bench_$(date +%Y%m%d_%H%M%S)}

for b in "$IGNIS_BIN" "$PROM_BIN" "$TARGETS_BIN"; do
  [[ -x $b ]] || { echo "missing executable: $b" >&2; exit 1; }
done
mkdir -p "$OUT"
# 1,000 listening ports plus a connection per target per server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

# The scrape config, the same for both servers.
{
  printf 'global:\n  scrape_interval: %s\n  scrape_timeout: %s\nscrape_configs:\n' "$INTERVAL" "$TIMEOUT"
  printf '  - job_name: bench\n    static_configs:\n      - targets:\n'
  for ((i = 0; i < TARGETS; i++)); do printf "          - '127.0.0.1:%d'\n" $((BASE_PORT + i)); done
} >"$OUT/scrape.yml"

"$TARGETS_BIN" "$BASE_PORT" "$TARGETS" "$SERIES" 2>"$OUT/targets.log" &
PIDS+=($!); TARGETS_PID=$!
for _ in $(seq 100); do
  grep -q serving "$OUT/targets.log" 2>/dev/null && break
  sleep 0.2
done
grep -q serving "$OUT/targets.log" || { cat "$OUT/targets.log" >&2; exit 1; }

rm -rf "$OUT/prom_data" "$OUT/ignis_data"
"$PROM_BIN" --config.file="$OUT/scrape.yml" --storage.tsdb.path="$OUT/prom_data" \
  --web.listen-address=127.0.0.1:$PROM_PORT 2>"$OUT/prometheus.log" &
PIDS+=($!); PROM_PID=$!
"$IGNIS_BIN" --config.file="$OUT/scrape.yml" --storage.tsdb.path="$OUT/ignis_data" \
  --web.listen-address=127.0.0.1:$IGNIS_PORT 2>"$OUT/ignis.log" &
PIDS+=($!); IGNIS_PID=$!

for port in $PROM_PORT $IGNIS_PORT; do
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null || { echo "server on :$port not ready" >&2; exit 1; }
done

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

echo "warm-up ${WARMUP}s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
sleep "$WARMUP"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A CPU0
for n in prom ignis targets; do
  pid_var=${n^^}_PID
  CPU0[$n]=$(cpu_ticks "${!pid_var}")
  : >"$OUT/rss_$n.txt"
done
T0=$(date +%s.%N)
END=$(( $(date +%s) + DURATION ))
while (( $(date +%s) < END )); do
  for n in prom ignis targets; do
    pid_var=${n^^}_PID
    kill -0 "${!pid_var}" 2>/dev/null || { echo "$n exited; see $OUT" >&2; exit 1; }
    rss_kib "${!pid_var}" >>"$OUT/rss_$n.txt"
  done
  sleep 5
done
T1=$(date +%s.%N)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

q() { # port, query -> first value
  curl -sf "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; v = r[0]["value"][1] if r else "-"; print(v if v == "-" else f"{float(v):.6g}")'
}

{
  echo "scrape benchmark: $TARGETS targets x $SERIES series every $INTERVAL, both servers at once"
  echo "measured ${DURATION}s after ${WARMUP}s warm-up; load average before: $LOAD_BEFORE after: $LOAD_AFTER"
  echo "ignis: $IGNIS_BIN ($("$IGNIS_BIN" --version 2>&1 | head -1))"
  echo "prometheus: $PROM_BIN ($("$PROM_BIN" --version 2>&1 | head -1))"
  echo
  printf '| %-10s | %12s | %12s | %12s | %9s | %12s | %12s | %10s |\n' server "CPU s/min" "RSS mean MiB" "RSS max MiB" "up==1" "samples/scrp" "head series" "scrape dur"
  printf '|%s|\n' "------------|--------------|--------------|--------------|-----------|--------------|--------------|------------"
  for n in ignis prom targets; do
    pid_var=${n^^}_PID
    c1=$(cpu_ticks "${!pid_var}")
    cpu=$(python3 -c "print(f'{($c1 - ${CPU0[$n]}) / $TICK / (($T1 - $T0) / 60):.2f}')")
    read -r mean max < <(awk '{s += $1; if ($1 > m) m = $1} END {printf "%.0f %.0f\n", s / NR / 1024, m / 1024}' "$OUT/rss_$n.txt")
    case $n in
      ignis) port=$IGNIS_PORT; name=ignis ;;
      prom) port=$PROM_PORT; name=prometheus ;;
      *) port=; name="(targets)" ;;
    esac
    if [[ -n $port ]]; then
      up=$(q "$port" 'count(up{job="bench"} == 1)')
      smp=$(q "$port" 'avg(scrape_samples_scraped{job="bench"})')
      hs=$(q "$port" 'prometheus_tsdb_head_series')
      [[ $hs == - ]] && hs=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^prometheus_tsdb_head_series /{print $2}')
      dur=$(q "$port" 'avg(scrape_duration_seconds{job="bench"})')
      dur=$(python3 -c "print(f'{float(\"$dur\") * 1000:.1f} ms')" 2>/dev/null || echo "$dur")
    else
      up=-; smp=-; hs=-; dur=-
    fi
    printf '| %-10s | %12s | %12s | %12s | %9s | %12s | %12s | %10s |\n' "$name" "$cpu" "$mean" "$max" "$up" "$smp" "$hs" "$dur"
  done
  echo
  echo "targets served: $(tail -1 "$OUT/targets.log")"
} | tee "$OUT/results.txt"
