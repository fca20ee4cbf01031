#!/usr/bin/env bash
# Whole-process benchmark: CPU per probe and peak RSS of sonde's inputs.http_response probing
# N local HTTP targets vs prometheus-blackbox-exporter probing the same targets, side by side
# in one run. Not part of the test suite.
#
# Usage: tests/bench/probes.sh [N targets, default 1000] [rounds per run, default 5] [runs, default 3]
# Env:   INTERVAL (seconds between rounds, default 5), CONCURRENCY (parallel blackbox probes,
#        default 256 = sonde's bound), SONDE_BIN (default: a release build of this tree).
#
# Method (the same for both):
#   - Apache (Debian's apache2, started here with its own ServerRoot on a free port) serves
#     /index.html; the N targets are http://127.0.0.1:PORT/index.html?t=1..N (N distinct URLs,
#     each probe a fresh connection, as both probers do).
#   - sonde runs one [[inputs.http_response]] with the N URLs every INTERVAL (round_interval
#     off), metrics written as line protocol to a file on tmpfs (counted, and checked all
#     `result=success`). After its first round, utime+stime is read from /proc/<pid>/stat;
#     again after `rounds` more rounds. CPU per probe = delta / (rounds × N).
#   - blackbox_exporter (module http_2xx) is driven by curl: each round is N /probe requests,
#     CONCURRENCY at a time (--parallel), one round per INTERVAL; one warm-up round first,
#     then the same measurement. curl's own CPU is not counted (as Prometheus's scrape is not).
#   - peak RSS = VmHWM at the end.
# Each runs `runs` times, interleaved; medians and ratios (sonde / blackbox) are reported.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

N=${1:-1000}
ROUNDS=${2:-5}
RUNS=${3:-3}
INTERVAL=${INTERVAL:-5}
CONCURRENCY=${CONCURRENCY:-256}

bench_need /usr/bin/prometheus-blackbox-exporter:prometheus-blackbox-exporter \
    /usr/sbin/apache2:apache2 curl:curl
bench_sonde_bin
bench_workdir sonde-bench-probes
chmod 755 "$WORK"

# ---------------------------------------------------------------- the targets: Apache
AP_PORT=$(free_port)
mkdir -p "$WORK/apache/htdocs"
echo "hello from the probe benchmark" >"$WORK/apache/htdocs/index.html"
M=/usr/lib/apache2/modules
cat >"$WORK/apache/apache.conf" <<EOF
ServerRoot "$WORK/apache"
ServerName localhost
PidFile $WORK/apache/apache.pid
DefaultRuntimeDir $WORK/apache
Mutex file:$WORK/apache default
ErrorLog $WORK/apache/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule dir_module $M/mod_dir.so
LoadModule mime_module $M/mod_mime.so
TypesConfig /etc/mime.types
StartServers 4
ServerLimit 8
ThreadsPerChild 64
MaxRequestWorkers 512
ListenBacklog 4096
Listen 127.0.0.1:$AP_PORT
DocumentRoot "$WORK/apache/htdocs"
<Directory "$WORK/apache/htdocs">
    Require all granted
</Directory>
EOF
/usr/sbin/apache2 -DFOREGROUND -f "$WORK/apache/apache.conf" </dev/null >"$WORK/apache.log" 2>&1 &
PIDS+=($!)
wait_port "$AP_PORT"

URLS=()
for i in $(seq "$N"); do URLS+=("http://127.0.0.1:$AP_PORT/index.html?t=$i"); done

# bench_sonde → "cpu_seconds_per_probe peak_rss_kb"
bench_sonde() {
    local cfg="$WORK/sonde.toml" out="$WORK/sonde.lp"
    rm -f "$out"
    {
        printf '[agent]\n  interval = "%ss"\n  round_interval = false\n  flush_interval = "1s"\n' "$INTERVAL"
        printf '  omit_hostname = true\n  metric_batch_size = 5000\n  metric_buffer_limit = 100000\n'
        printf '[[inputs.http_response]]\n  response_timeout = "5s"\n  urls = [\n'
        printf '    "%s",\n' "${URLS[@]}"
        printf '  ]\n[[outputs.file]]\n  files = ["%s"]\n' "$out"
    } >"$cfg"
    "$SONDE_BIN" --quiet --config "$cfg" </dev/null >/dev/null 2>"$WORK/sonde.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_count "$out" '^http_response,' "$N" 60
    local t0 t1 c0 c1 ok hwm
    c0=$(count_lines "$out" '^http_response,')
    t0=$(cpu_ticks "$pid")
    wait_count "$out" '^http_response,' $((c0 + ROUNDS * N)) $((ROUNDS * INTERVAL * 3 + 60))
    t1=$(cpu_ticks "$pid")
    c1=$(count_lines "$out" '^http_response,')
    hwm=$(hwm_kb "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    ok=$(count_lines "$out" 'result=success')
    [ "$ok" -eq "$(count_lines "$out" '^http_response,')" ] ||
        echo "warning: sonde: only $ok of $(count_lines "$out" '^http_response,') probes succeeded" >&2
    awk -v t=$((t1 - t0)) -v n=$((c1 - c0)) -v hz="$TICK" -v h="$hwm" \
        'BEGIN { printf "%.7f %d\n", t / hz / n, h }'
}

# bench_blackbox → "cpu_seconds_per_probe peak_rss_kb"
bench_blackbox() {
    local port cfg="$WORK/blackbox.yml" curlcfg="$WORK/curl.cfg"
    port=$(free_port)
    printf 'modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n' >"$cfg"
    /usr/bin/prometheus-blackbox-exporter --config.file="$cfg" --web.listen-address="127.0.0.1:$port" \
        --log.level=error </dev/null >/dev/null 2>"$WORK/blackbox.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    : >"$curlcfg"
    local u
    for u in "${URLS[@]}"; do
        printf 'url = "http://127.0.0.1:%s/probe?module=http_2xx&target=%s"\noutput = "/dev/null"\n' \
            "$port" "$(printf %s "$u" | sed 's/:/%3A/g; s,/,%2F,g; s/?/%3F/g; s/=/%3D/g')" >>"$curlcfg"
    done
    local check
    check=$(curl -s "http://127.0.0.1:$port/probe?module=http_2xx&target=http%3A%2F%2F127.0.0.1%3A$AP_PORT%2Findex.html" |
        awk '/^probe_success /{ print $2 }')
    [ "$check" = 1 ] || echo "warning: blackbox: probe_success=$check" >&2
    round() { curl -s --no-progress-meter --parallel --parallel-max "$CONCURRENCY" --config "$curlcfg"; }
    round # warm-up
    local t0 t1 hwm start r
    t0=$(cpu_ticks "$pid")
    for r in $(seq "$ROUNDS"); do
        start=$SECONDS
        round
        [ "$r" -eq "$ROUNDS" ] || sleep $((INTERVAL - (SECONDS - start) > 0 ? INTERVAL - (SECONDS - start) : 0))
    done
    t1=$(cpu_ticks "$pid")
    hwm=$(hwm_kb "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t=$((t1 - t0)) -v n=$((ROUNDS * N)) -v hz="$TICK" -v h="$hwm" \
        'BEGIN { printf "%.7f %d\n", t / hz / n, h }'
}

echo "== $N targets, $ROUNDS rounds per run (one per ${INTERVAL}s), $RUNS runs; $NCPUS CPUs; $(uname -r)"
echo "   sonde: $SONDE_BIN ($("$SONDE_BIN" version 2>/dev/null | head -1))"
echo "   blackbox_exporter: $(/usr/bin/prometheus-blackbox-exporter --version 2>&1 | head -1)"
for r in $(seq "$RUNS"); do
    for v in sonde blackbox; do
        res=$("bench_$v")
        echo "$res" >>"$WORK/$v.res"
        read -r cpu rss <<<"$res"
        printf '   run %d %-9s cpu/probe %s s, peak RSS %s kB\n' "$r" "$v" "$cpu" "$rss"
    done
done

echo "== medians"
declare -A CPU RSS
for v in sonde blackbox; do
    cpu=$(awk '{ print $1 }' "$WORK/$v.res" | median)
    rss=$(awk '{ print $2 }' "$WORK/$v.res" | median)
    printf '   %-9s cpu/probe %.1f µs, peak RSS %d kB\n' "$v" "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$rss"
    CPU[$v]=$cpu RSS[$v]=$rss
done
awk -v a="${CPU[sonde]}" -v b="${CPU[blackbox]}" -v c="${RSS[sonde]}" -v d="${RSS[blackbox]}" \
    'BEGIN { printf "== ratios (sonde / blackbox_exporter): cpu per probe %.2fx, peak RSS %.2fx\n", a / b, c / d }'
