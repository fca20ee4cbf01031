#!/usr/bin/env bash
# Whole-process ingest benchmark: a load generator posts pre-built line protocol to sonde's
# influxdb_listener; sonde forwards to outputs.discard (scenario "discard") and to
# outputs.influxdb_v2 against a local 204 sink (scenario "influxdb_v2"). For reference the
# same load is posted to InfluxDB 1.x itself. sonde and influxd are pinned to CPU 0, the load
# generator to the other CPUs. (tests/bench/remote_write.sh measures a fixed load of distinct
# lines through discard, influxdb_v2 and prometheus_remote_write until delivered, against
# vmagent and VictoriaMetrics' own /write.)
#
# Usage: tests/bench/ingest.sh [RUNS=5] [SECONDS=5] [CONNECTIONS=4] [LINES_PER_REQUEST=5000]
# Prints per scenario: median metrics/s over RUNS, CPU seconds per run (user+sys of the
# server process, median) and the server's peak RSS.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
RUNS=${1:-5} SECS=${2:-5} CONNS=${3:-4} LINES=${4:-5000}

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p sonde -p sonde-tests --bin sonde --bin loadgen
BIN="$CARGO_TARGET_DIR/release"
bench_workdir sonde-bench-ingest

# Runs the load RUNS times against $1 (address) $2 (path), server pid $3; prints a summary.
measure() {
    local addr=$1 path=$2 pid=$3 name=$4 rates=() cpus=()
    "$BIN/loadgen" post "$addr" "$path" 1 "$CONNS" "$LINES" >/dev/null   # warm-up
    for _ in $(seq "$RUNS"); do
        local t0; t0=$(cpu_ticks "$pid")
        read -r n secs refused < <(taskset -c "$LOADCPUS" "$BIN/loadgen" post "$addr" "$path" "$SECS" "$CONNS" "$LINES")
        local t1; t1=$(cpu_ticks "$pid")
        rates+=("$(python3 -c "print(int($n/$secs))")")
        cpus+=("$(python3 -c "print(round(($t1-$t0)/$TICK, 2))")")
        [ "$refused" = 0 ] || echo "  ($name: $refused requests refused)" >&2
    done
    python3 - "$name" "$(hwm_kb "$pid")" "${rates[*]}" "${cpus[*]}" "$SECS" <<'PY'
import statistics, sys
name, hwm, rates, cpus, secs = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()], float(sys.argv[5])
med = statistics.median(rates)
cpu = statistics.median(cpus)
print(f"{name:>24}: {med/1e6:6.2f} M metrics/s (median of {len(rates)}: {', '.join(f'{r/1e6:.2f}' for r in rates)}), "
      f"CPU {cpu:.2f} s per {secs:.0f} s run ({cpu/secs*100:.0f}% of a core), peak RSS {hwm/1024:.1f} MiB")
PY
}

run_sonde() {
    local name=$1 output=$2 port; port=$(free_port)
    cat > "$WORK/$name.toml" <<TOML
[agent]
  omit_hostname = true
  flush_interval = "1s"
  metric_batch_size = 5000
  metric_buffer_limit = 200000

[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$port"

$output
TOML
    taskset -c 0 "$BIN/sonde" --config "$WORK/$name.toml" 2>"$WORK/$name.log" &
    local pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/ping"
    measure "127.0.0.1:$port" "/write?db=bench" "$pid" "sonde → $name"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "== $RUNS runs of ${SECS}s, $CONNS connections, $LINES lines per request, $NCPUS CPUs"
run_sonde discard '[[outputs.discard]]'

SINK=127.0.0.1:$(free_port)
taskset -c "$LOADCPUS" "$BIN/loadgen" sink "$SINK" & PIDS+=($!)
sleep 0.3
run_sonde influxdb_v2 "[[outputs.influxdb_v2]]
  urls = [\"http://$SINK\"]
  bucket = \"bench\"
  content_encoding = \"identity\""

if command -v influxd >/dev/null; then
    IP=$(free_port); RP=$(free_port)
    cat > "$WORK/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$RP"
[meta]
  dir = "$WORK/influx/meta"
[data]
  dir = "$WORK/influx/data"
  wal-dir = "$WORK/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$IP"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
    taskset -c 0 influxd run -config "$WORK/influxdb.conf" >"$WORK/influxd.log" 2>&1 &
    IPID=$!; PIDS+=("$IPID")
    wait_http "http://127.0.0.1:$IP/ping"
    curl -sf -XPOST "http://127.0.0.1:$IP/query" --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
    measure "127.0.0.1:$IP" "/write?db=bench" "$IPID" "InfluxDB $(influxd version | awk '{print $2}') itself"
fi
