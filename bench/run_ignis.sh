#!/usr/bin/env bash
# Measure ignis with the shared bench harness (../shared/bench), optionally beside
# Prometheus 2.42 and VictoriaMetrics in the same run, one server at a time (as run_all.sh does),
# then compare.py ignis vs Prometheus on queries_compare.txt and report.py for all of them.
#
#   DATA=/tmp/rw_20k OUT=/tmp/results/ignis_20k bench/run_ignis.sh
#
# Env:
#   DATA      gen_rw.py output dir (required; generate with $BENCH_PY $BENCH/gen_rw.py ...)
#   OUT       output dir (default /tmp/results/ignis_<date>); never inside shared/
#   BENCH     the harness dir (default <checkout>/../shared/bench)
#   BENCH_PY  python with numpy + cramjam (default python3)
#   IGNIS_BIN ignis binary (default <checkout>/target/release/ignis; build it with
#             `cargo build --release -p web`)
#   PEERS     which servers to measure, in order (default "ignis prometheus victoriametrics")
#   COMPARE   1 (default): compare.py ignis vs Prometheus (restarts both on their data dirs)
#   Peers can be measured in separate invocations into the same OUT (e.g. PEERS=prometheus
#   COMPARE=0 first, then PEERS=ignis): data dirs of peers not listed are left alone, and the
#   report covers every <peer>.json present in OUT.
#   WORKERS (4), RUNS (5), IGNIS_PORT (19300), PROM_PORT (19090), VM_PORT (18428)
#   PROFILE   measure.py profile for ignis: prometheus (default; snapshot admin API, head
#             min/max time metrics) or generic
# Outputs in OUT: <peer>.json/.txt/.log, uptime_<peer>.txt (load average before/after each
# measurement), compare.txt/json, report.txt, versions.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
BENCH=$(cd "$BENCH" && pwd)
PY=${BENCH_PY:-python3}
DATA=${DATA:?set DATA to a gen_rw.py output dir}
OUT=${OUT:-/tmp/results/ignis_$(date +%Y%m%d_%H%M%S)}
IGNIS_BIN=${IGNIS_BIN:-$ROOT/target/release/ignis}
PEERS=${PEERS:-ignis prometheus victoriametrics}
COMPARE=${COMPARE:-1}
WORKERS=${WORKERS:-4}; RUNS=${RUNS:-5}; PROFILE=${PROFILE:-prometheus}
IGNIS_PORT=${IGNIS_PORT:-19300}; PROM_PORT=${PROM_PORT:-19090}; VM_PORT=${VM_PORT:-18428}
IGNIS_DIR=$OUT/ignis_data; PROM_DIR=$OUT/prom_data; VM_DIR=$OUT/vm_data
if [[ " $PEERS " == *" ignis "* || "$COMPARE" == 1 ]]; then
  [[ -x "$IGNIS_BIN" ]] || { echo "no ignis binary at $IGNIS_BIN (cargo build --release -p web)" >&2; exit 1; }
fi
[[ -f "$DATA/manifest.json" ]] || { echo "no $DATA/manifest.json" >&2; exit 1; }
mkdir -p "$OUT"

# Same minimal config as peers.sh gives Prometheus: nothing scraped, not even itself.
IGNIS_YML=$OUT/ignis.yml
cat > "$IGNIS_YML" <<YML
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs: []
YML

start_ignis() {
  # /-/ready: ignis is not ready during WAL replay (a restart on an existing dir).
  READY_PATH=/-/ready "$BENCH/peers.sh" start generic "$IGNIS_DIR" "$IGNIS_PORT" -- "$IGNIS_BIN" server \
    --config.file="$IGNIS_YML" --storage.tsdb.path={DATADIR} --storage.tsdb.retention.time=100y \
    --web.listen-address=127.0.0.1:{PORT} --web.enable-remote-write-receiver --web.enable-admin-api \
    --log.level=info
}

cleanup() {
  "$BENCH/peers.sh" stop generic "$IGNIS_DIR" >/dev/null 2>&1 || true
  "$BENCH/peers.sh" stop prometheus "$PROM_DIR" >/dev/null 2>&1 || true
  "$BENCH/peers.sh" stop victoriametrics "$VM_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "ignis: $IGNIS_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "prometheus: $(prometheus --version 2>&1 | head -1)"
  echo "victoria-metrics: $(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo '?')"
  echo "dataset: $DATA $(tr -d '\n ' < "$DATA/manifest.json" | grep -o '"series":[0-9]*,"samples_per_series":[0-9]*,"total_samples":[0-9]*')"
  echo "peers: $PEERS"
} >> "$OUT/versions.txt"
cat "$OUT/versions.txt"

measure() {  # name profile port dir [extra measure.py args]
  local name=$1 profile=$2 port=$3 dir=$4; shift 4
  uptime > "$OUT/uptime_$name.txt"
  "$PY" "$BENCH/measure.py" --name "$name" --profile "$profile" --url "http://127.0.0.1:$port" \
    --pid "$(cat "$dir.pid")" --datadir "$dir" --data "$DATA" --workers "$WORKERS" --compact \
    --runs "$RUNS" --out "$OUT/$name.json" "$@" > "$OUT/$name.txt" 2> "$OUT/$name.log" || {
      echo "measure.py $name failed (rc $?), see $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; }
  uptime >> "$OUT/uptime_$name.txt"
  cat "$OUT/uptime_$name.txt"
}

jsons=()
for peer in $PEERS; do
  echo "== $peer"
  case "$peer" in
  ignis)
    rm -rf "$IGNIS_DIR"
    start_ignis
    extra=()
    [[ "$PROFILE" == generic ]] && extra=(--compact-url /api/v1/admin/tsdb/snapshot)
    measure ignis "$PROFILE" "$IGNIS_PORT" "$IGNIS_DIR" "${extra[@]}"
    "$BENCH/peers.sh" stop generic "$IGNIS_DIR"
    ;;
  prometheus)
    rm -rf "$PROM_DIR"
    "$BENCH/peers.sh" start prometheus "$PROM_DIR" "$PROM_PORT"
    measure prometheus prometheus "$PROM_PORT" "$PROM_DIR"
    "$BENCH/peers.sh" stop prometheus "$PROM_DIR"
    ;;
  victoriametrics)
    rm -rf "$VM_DIR"
    "$BENCH/peers.sh" start victoriametrics "$VM_DIR" "$VM_PORT"
    measure victoriametrics victoriametrics "$VM_PORT" "$VM_DIR"
    "$BENCH/peers.sh" stop victoriametrics "$VM_DIR"
    ;;
  *) echo "unknown peer $peer" >&2; exit 1 ;;
  esac
done
for peer in ignis prometheus victoriametrics; do
  [[ -f "$OUT/$peer.json" ]] && jsons+=("$OUT/$peer.json")
done

if [[ "$COMPARE" == 1 && -d "$IGNIS_DIR" && -d "$PROM_DIR" ]]; then
  echo "== compare ignis vs prometheus (both restarted on their data dirs)"
  start_ignis
  "$BENCH/peers.sh" start prometheus "$PROM_DIR" "$PROM_PORT"
  uptime > "$OUT/uptime_compare.txt"
  "$PY" "$BENCH/compare.py" "http://127.0.0.1:$IGNIS_PORT" "http://127.0.0.1:$PROM_PORT" \
    "$BENCH/queries_compare.txt" --data "$DATA" --names ignis,prometheus --json "$OUT/compare.json" \
    > "$OUT/compare.txt" || true
  uptime >> "$OUT/uptime_compare.txt"
  "$BENCH/peers.sh" stop generic "$IGNIS_DIR"
  "$BENCH/peers.sh" stop prometheus "$PROM_DIR"
  tail -1 "$OUT/compare.txt"
fi

if [[ ${#jsons[@]} -gt 0 ]]; then
  "$PY" "$BENCH/report.py" "${jsons[@]}" | tee "$OUT/report.txt"
fi
