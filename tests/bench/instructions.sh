#!/usr/bin/env bash
# Instructions per metric of whole sonde processes on the listener -> remote-write path, counted
# by callgrind: within about 1% from run to run (batch sizes depend on timing), where CPU time on
# a shared machine swings by 20% and more. For comparing builds; remote_write.sh gives the time and the peer's figures.
# Not part of the test suite.
#
# Usage: tests/bench/instructions.sh [LINES, default 100000] [SONDE_BIN...]
#        (no binaries: a release build of this tree)
#
# Each binary runs under callgrind twice, with the same config (influxdb_listener ->
# prometheus_remote_write into `loadgen sink`, which answers 204 to everything): once idle,
# once while `loadgen lines` posts LINES lines (3 tags, 2 fields; 4 connections, 5,000 lines
# per request); sonde is stopped with SIGTERM, which flushes its buffer. Instructions per metric
# = (loaded - idle) / LINES, so start-up and shutdown cancel out.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

LINES=${1:-100000}
shift || true
bench_need valgrind:valgrind curl:curl
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
    bench_sonde_bin
    BINS=("$SONDE_BIN")
fi
cargo build --release --locked -q -p sonde-tests --bin loadgen
LOADGEN=${CARGO_TARGET_DIR:-target}/release/loadgen
bench_workdir sonde-instr

LISTEN=$(free_port)
SINK=$(free_port)
"$LOADGEN" sink "127.0.0.1:$SINK" &
PIDS+=($!)
cat >"$WORK/sonde.toml" <<EOF
[agent]
  omit_hostname = true
  flush_interval = "1s"
  metric_batch_size = 5000
  metric_buffer_limit = 2000000
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$LISTEN"
[[outputs.prometheus_remote_write]]
  url = "http://127.0.0.1:$SINK/api/v1/write"
EOF

# count BIN LINES → prints the instructions callgrind counted
count() {
    local out="$WORK/cg.out" log="$WORK/cg.log"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --config "$WORK/sonde.toml" \
        >"$log" 2>&1 &
    local vg=$!
    wait_http "http://127.0.0.1:$LISTEN/ping" 120
    if [ "$2" -gt 0 ]; then
        local sent
        sent=$("$LOADGEN" lines "127.0.0.1:$LISTEN" /write "$2" 4 5000 agent=instr)
        # loadgen prints: lines accepted, seconds, requests retried, requests failed.
        read -r ok _ _ failed <<<"$sent"
        if [ "$ok" != "$2" ] || [ "$failed" != 0 ]; then
            echo "load not accepted whole: $sent" >&2
            exit 1
        fi
    fi
    sleep 3 # a flush or two
    kill -TERM "$vg"
    wait "$vg" || { echo "sonde under callgrind failed:" >&2; tail "$log" >&2; exit 1; }
    if grep -q ' ERROR ' "$log"; then
        echo "sonde logged errors:" >&2
        grep ' ERROR ' "$log" | head >&2
        exit 1
    fi
    awk '/Collected :/ { print $NF }' "$log"
}

echo "== $LINES lines, listener -> prometheus_remote_write (callgrind)"
for bin in "${BINS[@]}"; do
    idle=$(count "$bin" 0)
    loaded=$(count "$bin" "$LINES")
    printf '   %s: %d instructions per metric (idle run %d M, loaded %d M)\n' "$bin" \
        $(((loaded - idle) / LINES)) $((idle / 1000000)) $((loaded / 1000000))
done
