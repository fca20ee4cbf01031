#!/usr/bin/env bash
# An output outage under a steady load, with the disk buffer: sonde's influxdb_listener takes
# CHUNK lines every 5 s while its outputs.http sink is down for OUTAGE seconds, then the sink
# comes back. Samples sonde's RSS and the buffer's disk use every 5 s, then checks that every
# line arrives, each series in order (tests/bench/lp_sink.py counts and checks). One
# connection posts, so the order the listener accepts is the order of the timestamps.
#
# Usage: tests/bench/outage.sh [OUTAGE_S=180] [CHUNK=100000] [DISK_LIMIT=1GiB] [STRATEGY=disk]
# Prints the RSS and disk samples, then: lines sent, delivered, out of order, duplicates,
# RSS at the first sample and the highest during the outage, the largest disk use.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
OUTAGE=${1:-180} CHUNK=${2:-100000} LIMIT=${3:-1GiB} STRATEGY=${4:-disk}

bench_sonde_bin
[ -x target/release/loadgen ] || cargo build --release -p sonde-tests --bin loadgen --locked -q
LOADGEN=${LOADGEN:-target/release/loadgen}
bench_workdir sonde-outage
# The buffer on a real disk, not on the tmpfs WORK may be.
BUF=$(mktemp -d /var/tmp/sonde-outage-buffer.XXXXXX)
bench_on_exit "rm -rf '$BUF'"

LISTEN=$(free_port) SINK=$(free_port)
cat > "$WORK/sonde.toml" <<TOML
[agent]
  omit_hostname = true
  flush_interval = "1s"
  metric_batch_size = 5000
  buffer_strategy = "$STRATEGY"
  buffer_directory = "$BUF"
  buffer_disk_limit = "$LIMIT"
  metric_buffer_limit = 100000000
  metric_buffer_limit_bytes = "4GiB"

[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$LISTEN"

[[outputs.http]]
  url = "http://127.0.0.1:$SINK/write"
TOML
"$SONDE_BIN" --config "$WORK/sonde.toml" 2>"$WORK/sonde.log" &
SONDE=$!
PIDS+=("$SONDE")
wait_port "$LISTEN"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
disk_kb() { du -sk "$BUF" | cut -f1; }
sent=0 chunk=0 first_rss="" max_rss=0 max_disk=0
echo "  t(s)  RSS(MiB)  buffer on disk(MiB)  lines sent"
start=$SECONDS
while [ $((SECONDS - start)) -lt "$OUTAGE" ]; do
    read -r acc _ _ _ < <(taskset -c "$LOADCPUS" "$LOADGEN" lines "127.0.0.1:$LISTEN" /write "$CHUNK" 1 5000 "chunk=c$chunk")
    sent=$((sent + acc)) chunk=$((chunk + 1))
    sleep 5
    r=$(rss_kb "$SONDE") d=$(disk_kb)
    [ -n "$first_rss" ] || first_rss=$r
    [ "$r" -le "$max_rss" ] || max_rss=$r
    [ "$d" -le "$max_disk" ] || max_disk=$d
    printf '%6d  %8.1f  %19.1f  %10d\n' $((SECONDS - start)) "$(ratio "$r" 1024 1)" "$(ratio "$d" 1024 1)" "$sent"
done

python3 tests/bench/lp_sink.py "$SINK" &
PIDS+=("$!")
wait_port "$SINK"
deadline=$((SECONDS + 600))
while :; do
    read -r got ooo dup < <(curl -sf "http://127.0.0.1:$SINK/count")
    [ "$got" -lt "$sent" ] || break
    [ $SECONDS -lt "$deadline" ] || { echo "only $got of $sent delivered after 600 s" >&2; break; }
    sleep 1
done
recovered=$((SECONDS - start - OUTAGE))
echo "strategy $STRATEGY: $sent lines sent during a ${OUTAGE}s outage, $got delivered in ${recovered}s after it, $ooo out of order, $dup duplicates"
echo "RSS first sample $(ratio "$first_rss" 1024 1) MiB, highest $(ratio "$max_rss" 1024 1) MiB; buffer on disk at most $(ratio "$max_disk" 1024 1) MiB (limit $LIMIT)"
grep -E "WARN|ERROR" "$WORK/sonde.log" | head -5 || true
