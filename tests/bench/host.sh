#!/usr/bin/env bash
# Whole-process benchmark: CPU per collection and peak RSS of sonde gathering the host inputs
# vs prometheus-node-exporter scraped the same number of times, side by side in one run.
# Not part of the test suite.
#
# Usage: tests/bench/host.sh [N collections per run, default 500] [runs, default 3]
# Env:   INTERVAL (default 50ms; also the scrape rate of node_exporter), SONDE_BIN (default: a
#        release build of this tree), NE_PORT (default 9199).
#
# Method (the same for every process):
#   - start it, let it do its first collection (start-up cost is not counted),
#   - read utime+stime from /proc/<pid>/stat, let it do N more collections at one per INTERVAL,
#     read utime+stime again; CPU per collection = delta / N; peak RSS = VmHWM at the end.
#   - sonde runs in run mode (round_interval off) with the 10 host inputs; its metrics go to
#     outputs.discard, and only the one-line `kernel` metric to a file, to count the gathers.
#     A second sonde variant writes every metric as line protocol to a file on tmpfs, to include
#     serialisation (node_exporter formats its text exposition on every scrape).
#     A third variant (sonde-default) runs exactly the inputs of the embedded default
#     config/sonde.toml (no netstat, like node_exporter's defaults have no per-state TCP
#     counts) with outputs.discard: what a user replacing node_exporter runs.
#   - node_exporter runs twice: with its default collectors (what users replace), and with only
#     the collectors that match sonde's host inputs (cpu, meminfo, filesystem, diskstats,
#     netdev, netstat, loadavg, stat, vmstat, uname-less, plus tcpstat and processes, which are
#     off by default: they gather what sonde's netstat and processes inputs do, TCP sockets by
#     state and process counts by state). curl scrapes it N times over one keep-alive
#     connection, paced at INTERVAL (--rate).
# Each variant runs `runs` times, interleaved; medians are reported.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

N=${1:-500}
RUNS=${2:-3}
INTERVAL=${INTERVAL:-50ms}
NE_PORT=${NE_PORT:-9199}

# ---------------------------------------------------------------- what is needed
bench_need prometheus-node-exporter:prometheus-node-exporter curl:curl
# The packaged service would compete for the CPU (and its port); it is left alone, but said.
if pgrep -x prometheus-node >/dev/null 2>&1 || pgrep -x node_exporter >/dev/null 2>&1; then
    echo "note: another node_exporter is running on this machine" >&2
fi

bench_sonde_bin
bench_workdir sonde-bench
# The benchmarks run in $(...) subshells: their processes are listed in a file.
# shellcheck disable=SC2016  # expanded when the cleanup runs
bench_on_exit '[ ! -f "$WORK/pids" ] || while read -r p; do kill "$p" 2>/dev/null || true; done <"$WORK/pids"'
# Interval in seconds, for curl's --rate and for waits.
secs=$(awk -v i="$INTERVAL" 'BEGIN { v = i + 0; if (i ~ /ms$/) v /= 1000; print v }')
per_min=$(awk -v s="$secs" 'BEGIN { printf "%d", 60 / s }')

# The [[inputs.*]] tables of the embedded default config, verbatim.
DEFAULT_INPUTS=$(awk '/^\[\[outputs\./ { exit } f && !/^#/ { print } /^\[\[inputs\./ && !f { f = 1; print }' \
    config/sonde.toml)
grep -q '^\[\[inputs\.kernel\]\]' <<<"$DEFAULT_INPUTS" ||
    { echo "config/sonde.toml has no inputs.kernel to count gathers by" >&2; exit 1; }

# bench_sonde <variant: discard|file|default> → prints "cpu_seconds_per_collection peak_rss_kb"
bench_sonde() {
    local variant=$1 cfg="$WORK/sonde-$1.toml" count="$WORK/count-$1.lp" all="$WORK/all-$1.lp"
    rm -f "$count" "$all"
    local outputs inputs=$HOST_INPUTS
    [ "$variant" = default ] && inputs=$DEFAULT_INPUTS
    if [ "$variant" != file ]; then
        outputs="[[outputs.discard]]
  namedrop = [\"kernel\"]
[[outputs.file]]
  files = [\"$count\"]
  namepass = [\"kernel\"]"
    else
        outputs="[[outputs.file]]
  files = [\"$all\"]"
        count=$all
    fi
    cat >"$cfg" <<EOF
[agent]
  interval = "$INTERVAL"
  round_interval = false
  flush_interval = "$INTERVAL"
  omit_hostname = true
$inputs
$outputs
EOF
    "$SONDE_BIN" --quiet --config "$cfg" </dev/null >/dev/null 2>"$WORK/sonde-$variant.log" &
    local pid=$!
    echo "$pid" >>"$WORK/pids"
    wait_count "$count" '^kernel ' 2 30
    local c0 t0 c1 t1
    c0=$(count_lines "$count" '^kernel ')
    t0=$(cpu_ticks "$pid")
    wait_count "$count" '^kernel ' $((c0 + N)) $((N * 2 + 60))
    t1=$(cpu_ticks "$pid")
    c1=$(count_lines "$count" '^kernel ')
    local hwm
    hwm=$(hwm_kb "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t=$((t1 - t0)) -v n=$((c1 - c0)) -v hz="$TICK" -v h="$hwm" \
        'BEGIN { printf "%.6f %d\n", t / hz / n, h }'
}

NE_MATCHING=(--collector.disable-defaults --collector.cpu --collector.meminfo
    --collector.filesystem --collector.diskstats --collector.netdev --collector.netstat
    --collector.loadavg --collector.stat --collector.vmstat --collector.tcpstat
    --collector.processes)

# bench_ne <default|matching> → prints "cpu_seconds_per_collection peak_rss_kb"
bench_ne() {
    local args=()
    [ "$1" = matching ] && args=("${NE_MATCHING[@]}")
    prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" --log.level=error \
        "${args[@]}" </dev/null >/dev/null 2>"$WORK/ne-$1.log" &
    local pid=$!
    echo "$pid" >>"$WORK/pids"
    local url="http://127.0.0.1:$NE_PORT/metrics" deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null "$url"; do
        [ $SECONDS -lt "$deadline" ] || { echo "node_exporter did not start" >&2; return 1; }
        sleep 0.05
    done
    curl -s -o "$WORK/ne-$1.prom" "$url"
    local cfg="$WORK/curl-$1.cfg"
    : >"$cfg"
    for _ in $(seq "$N"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
    local t0 t1 hwm
    t0=$(cpu_ticks "$pid")
    curl -sf --rate "$per_min/m" --config "$cfg"
    t1=$(cpu_ticks "$pid")
    hwm=$(hwm_kb "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t=$((t1 - t0)) -v n="$N" -v hz="$TICK" -v h="$hwm" \
        'BEGIN { printf "%.6f %d\n", t / hz / n, h }'
}

VARIANTS=(sonde-discard sonde-file sonde-default ne-default ne-matching)
echo "== $N collections per run, $RUNS runs, one per $INTERVAL; $NCPUS CPUs; $(uname -r)"
echo "   sonde: $SONDE_BIN ($("$SONDE_BIN" version 2>/dev/null | head -1))"
echo "   node_exporter: $(prometheus-node-exporter --version 2>&1 | head -1)"
for r in $(seq "$RUNS"); do
    for v in "${VARIANTS[@]}"; do
        case $v in
            sonde-*) res=$(bench_sonde "${v#sonde-}") ;;
            ne-*) res=$(bench_ne "${v#ne-}") ;;
        esac
        echo "$res" >>"$WORK/$v.res"
        read -r cpu rss <<<"$res"
        printf '   run %d %-14s cpu/collection %s s, peak RSS %s kB\n' "$r" "$v" "$cpu" "$rss"
    done
done

echo "== series per collection"
printf '   sonde: %s lines\n' "$(awk '/^kernel /{ k++ } END { printf "%d", NR / k }' "$WORK/all-file.lp")"
printf '   node_exporter default: %s samples, matching: %s samples\n' \
    "$(grep -vc '^#' "$WORK/ne-default.prom")" "$(grep -vc '^#' "$WORK/ne-matching.prom")"

echo "== medians"
declare -A CPU RSS
for v in "${VARIANTS[@]}"; do
    CPU[$v]=$(awk '{ print $1 }' "$WORK/$v.res" | median)
    RSS[$v]=$(awk '{ print $2 }' "$WORK/$v.res" | median)
    printf '   %-14s cpu/collection %8.1f µs   peak RSS %6.1f MB\n' "$v" \
        "$(awk -v c="${CPU[$v]}" 'BEGIN { print c * 1e6 }')" \
        "$(awk -v k="${RSS[$v]}" 'BEGIN { print k / 1024 }')"
done
echo "== ratios sonde / node_exporter (CPU per collection; target <= 0.25, RSS <= 10 MB)"
for s in sonde-discard sonde-file sonde-default; do
    for n in ne-default ne-matching; do
        printf '   %-14s / %-12s %s\n' "$s" "$n" "$(ratio "${CPU[$s]}" "${CPU[$n]}" 3)"
    done
done
