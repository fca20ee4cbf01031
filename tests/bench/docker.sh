#!/usr/bin/env bash
# Whole-process benchmark of inputs.docker with many containers, on a private Docker engine
# (own socket, data-root and exec-root in a temp dir; no bridge, no iptables) that this script
# starts and stops. Not part of the test suite.
#
# Usage: tests/bench/docker.sh ["10 50 100" container counts] [gathers per count, default 10]
# Env:   SONDE_BIN (default: a release build of this tree), INTERVAL (default 3s).
#
# Method, for each N:
#   - N running containers (`busybox sleep`, --network none) from a FROM-scratch busybox image;
#   - sonde in run mode, one [[inputs.docker]] (default options: running containers, per-CPU
#     and totals), outputs.discard, --debug so that every gather logs its `elapsed`;
#   - after the first gather (start-up and the first inspections are not counted), G more
#     gathers: wall time per gather = the median of the logged `elapsed`; sonde's CPU per
#     gather = (utime+stime) delta / G from /proc/<pid>/stat; the engine's CPU over the same
#     gathers likewise (what the gathers cost dockerd);
#   - the peer, in the same run: `docker stats --no-stream` over the same N containers (the
#     CLI asks each container's stats with stream=false, which makes the engine wait for a
#     second sample, as Telegraf's input does); its wall time, median of 3.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

COUNTS=${1:-"10 50 100"}
G=${2:-10}
INTERVAL=${INTERVAL:-3s}

for c in dockerd docker busybox python3; do
    command -v "$c" >/dev/null || { echo "$c missing: run tests/setup.sh" >&2; exit 1; }
done
bench_sonde_bin

# Not bench_workdir: the engine's data-root needs a disk-backed directory and its own cleanup.
WORK=$(mktemp -d /tmp/dkb.XXXXXX)
export DOCKER_HOST="unix://$WORK/d.sock" DOCKER_BUILDKIT=0
DPID=""
SPID=""
cleanup() {
    [ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true
    if [ -n "$DPID" ]; then
        ids=$(docker ps -aq 2>/dev/null || true)
        # shellcheck disable=SC2086  # one argument per container id
        [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
        kill "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    grep " $WORK/data" /proc/self/mounts | awk '{print $2}' | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

dockerd --host "$DOCKER_HOST" --data-root "$WORK/data" --exec-root "$WORK/exec" \
    --pidfile "$WORK/d.pid" --iptables=false --ip6tables=false --bridge=none \
    >"$WORK/dockerd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.3; done
docker version -f 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'

mkdir "$WORK/ctx"
cp "$(command -v busybox)" "$WORK/ctx/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' >"$WORK/ctx/Dockerfile"
docker build -q -t busybox "$WORK/ctx" >/dev/null 2>&1

have=0
printf '\n%5s  %14s  %14s  %16s  %18s  %8s\n' N "sonde wall s" "sonde CPU ms" "engine CPU ms" "docker stats s" "ratio"
for N in $COUNTS; do
    while [ "$have" -lt "$N" ]; do
        docker run -d --network none --name "b$have" busybox sleep 100000 >/dev/null
        have=$((have + 1))
    done
    sleep 2

    cat >"$WORK/sonde.toml" <<EOF
[agent]
interval = "$INTERVAL"
round_interval = false
omit_hostname = true
[[inputs.docker]]
endpoint = "$DOCKER_HOST"
[[outputs.discard]]
EOF
    "$SONDE_BIN" --debug --config "$WORK/sonde.toml" >"$WORK/sonde.log" 2>&1 &
    SPID=$!
    gathers() { grep -c 'gathered input="inputs.docker"' "$WORK/sonde.log" || true; }
    until [ "$(gathers)" -ge 1 ]; do sleep 0.05; done
    s0=$(cpu_ticks "$SPID"); d0=$(cpu_ticks "$DPID")
    until [ "$(gathers)" -ge $((G + 1)) ]; do sleep 0.05; done
    s1=$(cpu_ticks "$SPID"); d1=$(cpu_ticks "$DPID")
    kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
    if grep -q 'ERROR' "$WORK/sonde.log"; then
        echo "sonde logged errors:" >&2; grep ERROR "$WORK/sonde.log" | head -5 >&2
    fi
    # elapsed=1.00123s / elapsed=998.1ms, of gathers 2..G+1
    walls=$(grep 'gathered input="inputs.docker"' "$WORK/sonde.log" | sed -n "2,$((G + 1))p" |
        sed -E 's/.*elapsed=([0-9.]+)(ms|s|µs).*/\1 \2/' |
        awk '{ if ($2 == "ms") print $1 / 1000; else if ($2 == "µs") print $1 / 1e6; else print $1 }')
    wall=$(median <<<"$walls" | xargs printf '%.3f')
    metrics=$(grep 'gathered input="inputs.docker"' "$WORK/sonde.log" | tail -1 | sed -E 's/.*metrics=([0-9]+).*/\1/')
    scpu=$(python3 -c "print(f'{($s1 - $s0) * 1000 / $TICK / $G:.1f}')")
    dcpu=$(python3 -c "print(f'{($d1 - $d0) * 1000 / $TICK / $G:.1f}')")

    peer=()
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        docker stats --no-stream --format '{{.Name}}' >/dev/null
        t1=$(date +%s.%N)
        peer+=("$(python3 -c "print($t1 - $t0)")")
    done
    pw=$(printf '%s\n' "${peer[@]}" | median | xargs printf '%.3f')
    ratio=$(python3 -c "print(f'{$wall / $pw:.2f}')")
    printf '%5s  %14s  %14s  %16s  %18s  %8s   (%s metrics per gather)\n' "$N" "$wall" "$scpu" "$dcpu" "$pw" "$ratio" "$metrics"
done
echo
echo "wall = median over $G gathers after the first; CPU = per gather; ratio = sonde wall / docker stats --no-stream wall"
