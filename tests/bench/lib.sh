# Shared helpers of the whole-process benchmarks in tests/bench/ (sourced, not run).
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing changes to the repository root. Helpers:
#   bench_need CMD:PACKAGE...   apt-get install the packages whose command is missing
#   bench_sonde_bin             sets SONDE_BIN (default: `cargo build --release -p sonde`)
#   bench_workdir [PREFIX]      sets WORK (a temp dir, on tmpfs when possible) and a cleanup trap
#                               that kills every pid in PIDS (started by the script) and
#                               removes WORK; bench_on_exit CMD adds a command run first
#   free_port, wait_http URL [S], wait_port PORT [S]
#   cpu_ticks PID (utime+stime in clock ticks; TICK = ticks per second), hwm_kb PID (VmHWM)
#   count_lines FILE PATTERN, wait_count FILE PATTERN N TIMEOUT_S
#   median (numbers on stdin), ratio A B [DIGITS=2]
#   NCPUS: the CPUs this script may use, counted when sourced
#   LOADCPUS: the CPUs other than 0, for load generators (the measured process runs on CPU 0)
#   HOST_INPUTS: the [[inputs.*]] tables of the ten host inputs (host.sh, host_ab.sh)
# shellcheck shell=bash

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

# shellcheck disable=SC2034  # used by the scripts that source this file
TICK=$(getconf CLK_TCK)
# shellcheck disable=SC2034
NCPUS=$(nproc)
# shellcheck disable=SC2034
LOADCPUS="1-$(($(nproc) - 1))"
# shellcheck disable=SC2034
[ "$(nproc)" -gt 1 ] || LOADCPUS=0

# shellcheck disable=SC2034
HOST_INPUTS='
[[inputs.cpu]]
  percpu = true
  totalcpu = true
[[inputs.disk]]
  ignore_fs = ["tmpfs", "devtmpfs", "devfs", "iso9660", "overlay", "aufs", "squashfs"]
[[inputs.diskio]]
[[inputs.kernel]]
[[inputs.mem]]
[[inputs.net]]
[[inputs.netstat]]
[[inputs.processes]]
[[inputs.swap]]
[[inputs.system]]
'

# bench_need cmd:package... : installs the packages of the missing commands.
bench_need() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || [ -x "${pair%%:*}" ] || need+=("${pair#*:}")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
}

# Sets SONDE_BIN: as given, or a release build of this tree.
bench_sonde_bin() {
    if [ -z "${SONDE_BIN:-}" ]; then
        cargo build --release -p sonde --locked -q
        SONDE_BIN="${CARGO_TARGET_DIR:-target}/release/sonde"
    fi
    [ -x "$SONDE_BIN" ] || { echo "no sonde binary at $SONDE_BIN" >&2; exit 1; }
}

PIDS=()
BENCH_ON_EXIT=()
bench_on_exit() { BENCH_ON_EXIT+=("$1"); }
bench_cleanup() {
    local c p
    for c in "${BENCH_ON_EXIT[@]}"; do eval "$c" || true; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -z "${WORK:-}" ] || rm -rf "$WORK"
}

# Sets WORK to a new temp dir (on /dev/shm when possible) removed at exit.
bench_workdir() {
    WORK=$(mktemp -d "/dev/shm/${1:-sonde-bench}.XXXXXX" 2>/dev/null || mktemp -d)
    trap bench_cleanup EXIT
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url [timeout_s]
    local deadline=$((SECONDS + ${2:-30}))
    until curl -sf -o /dev/null "$1"; do
        [ $SECONDS -lt "$deadline" ] || { echo "no answer from $1" >&2; return 1; }
        sleep 0.05
    done
}

wait_port() { # port [timeout_s]
    local deadline=$((SECONDS + ${2:-30}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -lt "$deadline" ] || { echo "nothing listens on $1" >&2; return 1; }
        sleep 0.05
    done
}

# utime+stime of a process in clock ticks (fields 14 and 15, counted after the "(comm)").
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

count_lines() { if [ -f "$1" ]; then grep -c "$2" "$1" || true; else echo 0; fi; }

wait_count() { # file pattern target timeout_s
    local deadline=$((SECONDS + $4))
    while [ "$(count_lines "$1" "$2")" -lt "$3" ]; do
        [ $SECONDS -lt "$deadline" ] || { echo "timeout waiting for $3 x $2 in $1" >&2; return 1; }
        sleep 0.01
    done
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else print "inf" }'; }
