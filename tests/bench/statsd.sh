#!/usr/bin/env bash
# Whole-process benchmark: CPU per million statsd lines of sonde's inputs.statsd (UDP, with
# DogStatsD tags and a template), for SONDE_BIN against PEER_BIN (another sonde build, e.g.
# the main branch's, to see what a parser change costs), side by side in one run. Not part
# of the test suite. No Telegraf package exists in Debian, so Telegraf itself is not the peer.
#
# Usage: tests/bench/statsd.sh [packets, default 20000] [runs, default 3]
# Env:   SONDE_BIN (default: a release build of this tree), PEER_BIN (required),
#        RATE (packets per second sent, default 4000 = 100,000 lines/s), SONDE_EXTRA (more
#        statsd options for SONDE_BIN only, e.g. "number_workers_threads = 1").
#
# Method (the same for both binaries):
#   - sonde runs one [[inputs.statsd]] on UDP (read_buffer_size 8 MiB, a queue that holds
#     every packet so none is dropped), pinned to CPU 0, emitting every second into
#     outputs.file on tmpfs.
#   - a Python sender on the other CPUs sends the packets at RATE per second: 25 lines each (counters, gauges,
#     timings, sets; bucket tags, DogStatsD tags, sample rates), 20 distinct series.
#   - CPU = utime+stime of sonde from just before the first packet until its CPU time stops
#     growing after the last. Every packet carries `bench.sent:1|c`; the sum of that counter
#     in the output must equal the packets sent (nothing lost), else the run fails.
# Each binary runs `runs` times, interleaved; medians and the ratio SONDE_BIN / PEER_BIN.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

PACKETS=${1:-20000}
RUNS=${2:-3}
RATE=${RATE:-4000}
[ -n "${PEER_BIN:-}" ] && [ -x "$PEER_BIN" ] || { echo "set PEER_BIN to a sonde binary" >&2; exit 1; }
bench_sonde_bin
bench_workdir sonde-bench-statsd
LINES_PER_PACKET=25

cat >"$WORK/send.py" <<'EOF'
import socket, sys, time
port, packets, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lines = ["bench.sent:1|c"]
for i in range(24):
    s = i % 20
    kind = i % 4
    if kind == 0:
        lines.append(f"app.web{s}.requests,region=eu:{i}|c|@0.5|#env:prod,team:core")
    elif kind == 1:
        lines.append(f"app.web{s}.load:{i}.5|g|#env:prod")
    elif kind == 2:
        lines.append(f"app.web{s}.latency:{i * 3}|ms|#env:prod,team:core")
    else:
        lines.append(f"app.web{s}.users:user{i}|s")
packet = "\n".join(lines).encode()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for n in range(packets):
    sock.sendto(packet, ("127.0.0.1", port))
    if n % 100 == 99:
        # Paced, so that the socket buffer never overflows: the same work for both.
        ahead = (n + 1) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
EOF

run_one() { # binary label [extra statsd options]
    local bin=$1 port out cfg pid t0 t1 prev sum
    port=$(free_port)
    out="$WORK/out-$2.lp"
    cfg="$WORK/sonde-$2.toml"
    rm -f "$out"
    cat >"$cfg" <<EOF
[agent]
  interval = "1s"
  flush_interval = "1s"
  omit_hostname = true
  metric_buffer_limit = 1000000

[[inputs.statsd]]
  protocol = "udp"
  service_address = "127.0.0.1:$port"
  parse_data_dog_tags = true
  templates = ["app.* measurement.host.field"]
  percentiles = [50.0, 90.0, 99.0]
  allowed_pending_messages = $((PACKETS + 100))
  read_buffer_size = 8388608
${3:-}

[[outputs.file]]
  files = ["$out"]
EOF
    taskset -c 0 "$bin" --config "$cfg" 2>"$WORK/log-$2" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do grep -q "statsd listening" "$WORK/log-$2" && break; sleep 0.1; done
    t0=$(cpu_ticks "$pid")
    taskset -c "$LOADCPUS" python3 "$WORK/send.py" "$port" "$PACKETS" "$RATE"
    prev=-1
    t1=$(cpu_ticks "$pid")
    while [ "$t1" != "$prev" ]; do prev=$t1; sleep 1.5; t1=$(cpu_ticks "$pid"); done
    sleep 1.5
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    sum=$(awk '/^bench_sent/ { sub(/^.* value=/, ""); sub(/i .*$/, ""); s += $1 } END { print s + 0 }' "$out")
    [ "$sum" -eq "$PACKETS" ] || { echo "$2: $sum of $PACKETS packets counted" >&2; exit 1; }
    # ms of CPU per million lines (the idle emissions after the last packet are included).
    awk -v t=$((t1 - t0)) -v tick="$TICK" -v n=$((PACKETS * LINES_PER_PACKET)) \
        'BEGIN { printf "%.0f\n", t * 1000 / tick / n * 1000000 }'
}

new=() peer=()
for r in $(seq "$RUNS"); do
    new+=("$(run_one "$SONDE_BIN" "new-$r" "${SONDE_EXTRA:-}")")
    peer+=("$(run_one "$PEER_BIN" "peer-$r")")
    echo "run $r: SONDE_BIN ${new[-1]} ms, PEER_BIN ${peer[-1]} ms of CPU per million lines" >&2
done
mn=$(printf '%s\n' "${new[@]}" | median)
mp=$(printf '%s\n' "${peer[@]}" | median)
echo "statsd UDP, $((PACKETS * LINES_PER_PACKET)) lines per run, $RUNS runs: CPU per million lines (median):"
echo "  SONDE_BIN $mn ms, PEER_BIN $mp ms, ratio $(ratio "$mn" "$mp")"
