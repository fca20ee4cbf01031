#!/usr/bin/env bash
# A/B of two sonde builds on the host inputs: CPU per collection, runs alternating between the
# builds so that the shared machine's drift falls on both. host.sh gives the ratios against
# node_exporter; this is for telling two builds apart. Not part of the test suite.
#
# Usage: tests/bench/host_ab.sh BIN_A BIN_B [RUNS, default 5] [SECONDS per run, default 10]
# Env:   NETSTAT=1 adds inputs.netstat to the nine inputs of the default config's kind.
#
# Each run starts the build with the inputs at a 50 ms interval (flush 50 ms, outputs.discard),
# waits 2 s, and reads its utime+stime from /proc/<pid>/stat across SECONDS; CPU per collection
# = that / (SECONDS / 50 ms). Prints every run and the medians.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -ge 2 ] || { sed -n '6,7p' "$0" >&2; exit 2; }
A=$1 B=$2 RUNS=${3:-5} SECS=${4:-10}
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "no sonde binary at $bin" >&2; exit 1; }; done
bench_workdir sonde-host-ab

cat >"$WORK/sonde.toml" <<EOF
[agent]
  interval = "50ms"
  round_interval = false
  flush_interval = "50ms"
  omit_hostname = true
$(if [ "${NETSTAT:-0}" = 1 ]; then echo "$HOST_INPUTS"; else grep -v '^\[\[inputs\.netstat\]\]' <<<"$HOST_INPUTS"; fi)
[[outputs.discard]]
EOF

# one BIN → prints milliseconds of CPU per collection
one() {
    "$1" --quiet --config "$WORK/sonde.toml" </dev/null >/dev/null 2>"$WORK/log" &
    local pid=$!
    PIDS+=("$pid")
    sleep 2
    kill -0 "$pid" 2>/dev/null || { echo "$1 exited:" >&2; tail "$WORK/log" >&2; exit 1; }
    local t0 t1
    t0=$(cpu_ticks "$pid")
    sleep "$SECS"
    t1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v d=$((t1 - t0)) -v tick="$TICK" -v s="$SECS" 'BEGIN { printf "%.3f", d / tick * 1000 / (s / 0.05) }'
}

echo "== host inputs$([ "${NETSTAT:-0}" = 1 ] && echo ' + netstat'), $RUNS runs of $SECS s each, alternating"
a_runs=() b_runs=()
for r in $(seq "$RUNS"); do
    a_runs+=("$(one "$A")")
    b_runs+=("$(one "$B")")
    echo "   run $r: A ${a_runs[-1]} ms, B ${b_runs[-1]} ms per collection"
done
ma=$(printf '%s\n' "${a_runs[@]}" | median)
mb=$(printf '%s\n' "${b_runs[@]}" | median)
echo "   medians: A $ma ms ($A), B $mb ms ($B); B / A = $(ratio "$mb" "$ma" 3)"
