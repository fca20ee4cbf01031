#!/usr/bin/env bash
# Whole-process benchmark of the executor-to-central-store path: jobs post line protocol to a
# local agent, which forwards it to VictoriaMetrics. sonde (inputs.influxdb_listener →
# outputs.prometheus_remote_write) against vmagent (/write → -remoteWrite.url), both from
# Debian's victoria-metrics package, into one VictoriaMetrics, side by side in one run.
# Not part of the test suite.
#
# Usage: tests/bench/remote_write.sh [RUNS=3] [LINES=600000] [CONNECTIONS=4] [LINES_PER_REQUEST=5000]
# Env:   SONDE_BIN         a prebuilt sonde to measure (default: `cargo build --release -p sonde
#                          -p sonde-tests`, the shipped profile, and target/release/sonde)
#        SONDE_AGENT_TOML  extra lines for sonde's [agent] table, e.g.
#                          'buffer_strategy = "disk"'; a key given there replaces the
#                          script's own setting of that key (see AGENT below)
#        SCENARIOS         default "sonde_rw vmagent sonde_v2 sonde_discard vm_write"
#        WAIT_TIMEOUT      seconds to wait for every sample to be queryable (default 300)
#        PERF_DIR          if set, `perf record` each sonde process during its load, into
#                          PERF_DIR/<scenario>-<run>.data (perf's overhead inflates the figures)
#        PERF_ARGS         default "--call-graph dwarf,16384 -F 499"
#
# Scenarios, each with fresh processes in every run:
#   sonde_rw       sonde: influxdb_listener → prometheus_remote_write → VictoriaMetrics
#   vmagent        vmagent: /write → -remoteWrite.url → the same VictoriaMetrics
#   sonde_v2       sonde: influxdb_listener → influxdb_v2 (defaults: gzip) → VictoriaMetrics'
#                  /api/v2/write
#   sonde_discard  sonde: influxdb_listener → outputs.discard (no delivery)
#   vm_write       VictoriaMetrics' own /write ingest of the same load (its own fresh instance)
# Load: `loadgen lines` posts LINES distinct lines (measurement bench, 2 fields, 1000 series,
# one timestamp per line: every sample is stored) over CONNECTIONS keep-alive connections,
# retrying requests answered 429/503 after their Retry-After. Each scenario's data carries its
# own `agent` tag, so the sink VictoriaMetrics counts them apart.
# The measured process runs on CPU 0; the load generator, the sink VictoriaMetrics and the
# polling on the other CPUs (taskset). Per scenario and run:
#   lines/s accepted   LINES / the load generator's elapsed time (first request to last answer)
#   CPU s per M        utime+stime of the measured process from the start of the load until
#                      every sample is queryable in VictoriaMetrics, per million lines
#                      (metrics) accepted; sonde_discard and vm_write: until the load ends
#                      (vm_write is then still checked for every sample, but the count
#                      queries would run on the measured process itself)
#   peak RSS           VmHWM of the measured process at the end
#   samples            sum(count_over_time(...)) in VictoriaMetrics: 2 per line when complete
# Medians over RUNS, and ratios sonde / vmagent (and sonde discard / VictoriaMetrics /write).
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=${1:-3}
LINES=${2:-600000}
CONNS=${3:-4}
PER_REQ=${4:-5000}
SCENARIOS=${SCENARIOS:-"sonde_rw vmagent sonde_v2 sonde_discard vm_write"}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}
PERF_ARGS=${PERF_ARGS:-"--call-graph dwarf,16384 -F 499"}
VM=/usr/bin/victoria-metrics
VMAGENT=/usr/bin/vmagent

bench_need "$VM:victoria-metrics" curl:curl jq:jq taskset:util-linux python3:python3
[ -x "$VMAGENT" ] || { echo "$VMAGENT missing (Debian's victoria-metrics package ships it)" >&2; exit 1; }
if [ -n "${PERF_DIR:-}" ]; then
    command -v perf >/dev/null || { echo "PERF_DIR set but perf is missing" >&2; exit 1; }
    mkdir -p "$PERF_DIR"
fi

if [ -z "${SONDE_BIN:-}" ]; then
    cargo build --release --locked -q -p sonde -p sonde-tests
    SONDE_BIN="${CARGO_TARGET_DIR:-target}/release/sonde"
elif [ -z "${LOADGEN_BIN:-}" ]; then
    cargo build --release --locked -q -p sonde-tests --bin loadgen
fi
LOADGEN_BIN=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-target}/release/loadgen}
[ -x "$SONDE_BIN" ] || { echo "no sonde binary at $SONDE_BIN" >&2; exit 1; }
[ -x "$LOADGEN_BIN" ] || { echo "no loadgen binary at $LOADGEN_BIN" >&2; exit 1; }

# This shell, the load generator, the sink and the polling run on the other CPUs; the measured
# process is started with taskset -c 0.
taskset -pc "$LOADCPUS" $$ >/dev/null
bench_workdir sonde-bench-rw
RES="$WORK/results"
: >"$RES"

# sonde's [agent] table: the script's settings, minus any key SONDE_AGENT_TOML sets itself.
# The buffer holds the whole burst (today's buffer drops the oldest when full; nothing may be
# lost here), and a batch of 5000 two-field metrics is vmagent's block of 10000 samples.
AGENT_DEFAULTS='omit_hostname = true
flush_interval = "1s"
metric_batch_size = 5000
metric_buffer_limit = 2000000
metric_buffer_limit_bytes = "4GiB"'
AGENT=""
while IFS= read -r line; do
    key=${line%% =*}
    grep -Eq "^[[:space:]]*${key}[[:space:]]*=" <<<"${SONDE_AGENT_TOML:-}" || AGENT+="  $line"$'\n'
done <<<"$AGENT_DEFAULTS"
[ -z "${SONDE_AGENT_TOML:-}" ] || AGENT+="${SONDE_AGENT_TOML}"$'\n'

# vm_start NAME CPUS → sets VM_PID and VM_PORT: a fresh VictoriaMetrics in $RUNDIR/NAME.
vm_start() {
    VM_PORT=$(free_port)
    taskset -c "$2" "$VM" -storageDataPath="$RUNDIR/$1" -httpListenAddr="127.0.0.1:$VM_PORT" \
        -search.disableCache -search.latencyOffset=0s -loggerLevel=ERROR \
        </dev/null >"$RUNDIR/$1.log" 2>&1 &
    VM_PID=$!
    PIDS+=("$VM_PID")
    wait_http "http://127.0.0.1:$VM_PORT/health"
}

# vm_count PORT AGENT → the number of samples of that agent's data VictoriaMetrics returns.
vm_count() {
    curl -sf "http://127.0.0.1:$1/api/v1/query" --data-urlencode "nocache=1" \
        --data-urlencode "query=sum(count_over_time({__name__=~\"bench_.+\",agent=\"$2\"}[3h]))" |
        jq -r '.data.result[0].value[1] // "0"' 2>/dev/null || echo 0
}

# sonde_start NAME OUTPUT_TOML → sets APID (pinned to CPU 0) and ADDR.
sonde_start() {
    local port
    port=$(free_port)
    cat >"$RUNDIR/$1.toml" <<TOML
[agent]
$AGENT
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$port"

$2
TOML
    taskset -c 0 "$SONDE_BIN" --config "$RUNDIR/$1.toml" </dev/null >/dev/null 2>"$RUNDIR/$1.log" &
    APID=$!
    PIDS+=("$APID")
    ADDR=127.0.0.1:$port
    wait_http "http://$ADDR/ping" || { cat "$RUNDIR/$1.log" >&2; exit 1; }
}

# measure NAME PID ADDR PATH SINK_PORT(or "") [CPU_UNTIL=delivered|load]: the load, then the
# wait for delivery; the CPU window ends when every sample is queryable, or with the load.
measure() {
    local name=$1 pid=$2 addr=$3 path=$4 sink=$5 until=${6:-delivered}
    local perf_pid="" t0 t1 out accepted secs retried failed
    local n=0 want deadline
    if [ -n "${PERF_DIR:-}" ] && [[ $name == sonde* ]]; then
        # shellcheck disable=SC2086  # PERF_ARGS is a list of arguments
        perf record $PERF_ARGS -p "$pid" -o "$PERF_DIR/$name-$RUN.data" 2>"$RUNDIR/perf-$name.log" &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 1
    fi
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOADCPUS" "$LOADGEN_BIN" lines "$addr" "$path" "$LINES" "$CONNS" "$PER_REQ" "agent=$name")
    read -r accepted secs retried failed <<<"$out"
    want=$((accepted * 2))
    [ "$until" = delivered ] || t1=$(cpu_ticks "$pid")
    if [ -n "$sink" ]; then
        deadline=$((SECONDS + WAIT_TIMEOUT))
        while n=$(vm_count "$sink" "$name"); [ "$n" -lt "$want" ]; do
            if [ $SECONDS -ge "$deadline" ]; then
                echo "FAILED: $name run $RUN: $n of $want samples queryable after ${WAIT_TIMEOUT}s" >&2
                tail -5 "$RUNDIR/$name.log" >&2 || true
                exit 1
            fi
            sleep 0.1
        done
    fi
    [ "$until" = load ] || t1=$(cpu_ticks "$pid")
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
    fi
    [ "$failed" = 0 ] || echo "  ($name run $RUN: $failed lines refused, not retried)" >&2
    # scenario run lines/s cpu_s_per_M_lines rss_kb samples retried
    awk -v name="$name" -v run="$RUN" -v a="$accepted" -v s="$secs" -v t=$((t1 - t0)) -v hz="$TICK" \
        -v h="$(hwm_kb "$pid")" -v n="$n" -v r="$retried" \
        'BEGIN { printf "%s %d %.0f %.3f %d %d %d\n", name, run, a / s, t / hz / (a / 1e6), h, n, r }' |
        tee -a "$RES" | awk '{ printf "   run %d %-14s %9d lines/s  %6.3f CPU s/M  peak RSS %7.1f MB  samples %8d  retried %d\n", $2, $1, $3, $4, $5 / 1024, $6, $7 }'
    [ "$n" -ge "$want" ] || [ -z "$sink" ] || { echo "FAILED: $name delivered $n of $want" >&2; exit 1; }
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

run_scenario() {
    local name=$1
    case $name in
        sonde_rw)
            sonde_start "$name" "[[outputs.prometheus_remote_write]]
  url = \"http://127.0.0.1:$SINK_PORT/api/v1/write\""
            measure "$name" "$APID" "$ADDR" /write "$SINK_PORT"
            stop "$APID" ;;
        sonde_v2)
            sonde_start "$name" "[[outputs.influxdb_v2]]
  urls = [\"http://127.0.0.1:$SINK_PORT\"]
  token = \"\"
  organization = \"\"
  bucket = \"bench\""
            measure "$name" "$APID" "$ADDR" /write "$SINK_PORT"
            stop "$APID" ;;
        sonde_discard)
            sonde_start "$name" "[[outputs.discard]]"
            measure "$name" "$APID" "$ADDR" /write ""
            stop "$APID" ;;
        vmagent)
            local port
            port=$(free_port)
            taskset -c 0 "$VMAGENT" -httpListenAddr="127.0.0.1:$port" \
                -remoteWrite.url="http://127.0.0.1:$SINK_PORT/api/v1/write" \
                -remoteWrite.tmpDataPath="$RUNDIR/vmagent-queue" -loggerLevel=ERROR \
                </dev/null >"$RUNDIR/$name.log" 2>&1 &
            APID=$!
            PIDS+=("$APID")
            wait_http "http://127.0.0.1:$port/health"
            measure "$name" "$APID" "127.0.0.1:$port" /write "$SINK_PORT"
            stop "$APID" ;;
        vm_write)
            local sink_pid=$VM_PID sink_port=$VM_PORT
            vm_start vm-self 0
            # Its CPU until the load ends: the count queries would run on the measured process.
            measure "$name" "$VM_PID" "127.0.0.1:$VM_PORT" /write "$VM_PORT" load
            stop "$VM_PID"
            VM_PID=$sink_pid VM_PORT=$sink_port ;;
        *) echo "unknown scenario $name" >&2; exit 2 ;;
    esac
}

echo "== $RUNS runs; $LINES lines of 2 fields per scenario, $CONNS connections, $PER_REQ lines per request; $NCPUS CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   sonde: $SONDE_BIN ($("$SONDE_BIN" version 2>/dev/null | head -1))"
echo "   VictoriaMetrics and vmagent: $(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo '?')"
echo "   sonde [agent]:"
printf '%s' "$AGENT" | sed 's/^/   /'
for RUN in $(seq "$RUNS"); do
    RUNDIR="$WORK/run$RUN"
    mkdir -p "$RUNDIR"
    vm_start sink "$LOADCPUS"
    SINK_PORT=$VM_PORT
    # sonde and vmagent alternate who goes first.
    order=$SCENARIOS
    if [ $((RUN % 2)) = 0 ]; then
        order=$(sed 's/sonde_rw/__x__/; s/vmagent/sonde_rw/; s/__x__/vmagent/' <<<"$SCENARIOS")
    fi
    for s in $order; do run_scenario "$s"; done
    stop "$VM_PID"
    rm -rf "$RUNDIR"/sink "$RUNDIR"/vm-self "$RUNDIR"/vmagent-queue
done

echo "== medians over $RUNS runs"
declare -A LPS CPU RSS SMP
for s in $SCENARIOS; do
    LPS[$s]=$(awk -v s="$s" '$1 == s { print $3 }' "$RES" | median)
    CPU[$s]=$(awk -v s="$s" '$1 == s { print $4 }' "$RES" | median)
    RSS[$s]=$(awk -v s="$s" '$1 == s { print $5 }' "$RES" | median)
    SMP[$s]=$(awk -v s="$s" '$1 == s { print $6 }' "$RES" | median)
    printf '   %-14s %9.0f lines/s  %6.3f CPU s per M metrics  peak RSS %7.1f MB  samples %d\n' \
        "$s" "${LPS[$s]}" "${CPU[$s]}" "$(awk -v k="${RSS[$s]}" 'BEGIN { print k / 1024 }')" "${SMP[$s]}"
done
pair() { # a b label
    [ -n "${LPS[$1]:-}" ] && [ -n "${LPS[$2]:-}" ] || return 0
    printf '   %-30s lines/s %s  CPU per M %s  peak RSS %s\n' "$3" \
        "$(ratio "${LPS[$1]}" "${LPS[$2]}")" "$(ratio "${CPU[$1]}" "${CPU[$2]}")" "$(ratio "${RSS[$1]}" "${RSS[$2]}")"
}
echo "== ratios (medians)"
pair sonde_rw vmagent "sonde_rw / vmagent"
pair sonde_v2 vmagent "sonde_v2 / vmagent"
pair sonde_discard vm_write "sonde_discard / vm_write"
