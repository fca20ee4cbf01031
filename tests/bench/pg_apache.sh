#!/usr/bin/env bash
# Whole-process benchmark: CPU per collection and peak RSS of sonde's postgresql and apache
# inputs vs prometheus-postgres-exporter and prometheus-apache-exporter, against the same
# PostgreSQL and Apache (started here, in a temp dir, on free loopback ports), side by side in
# one run. Not part of the test suite.
#
# Usage: tests/bench/pg_apache.sh [N collections per run, default 300] [runs, default 3]
# Env:   INTERVAL (default 50ms; also the exporters' scrape rate), SONDE_BIN (default: a
#        release build of this tree).
#
# Method (the same for every process):
#   - start it, let it do its first collection (start-up cost is not counted),
#   - read utime+stime from /proc/<pid>/stat, let it do N more collections at one per INTERVAL,
#     read utime+stime again; CPU per collection = delta / N; peak RSS = VmHWM at the end.
#   - sonde runs in run mode (round_interval off), writing every metric as line protocol to a
#     file on tmpfs (the exporters format their text exposition on every scrape); gathers are
#     counted by the one background-writer line (postgresql) or the one apache line per gather.
#   - PostgreSQL variants: sonde-pg = inputs.postgresql (pg_stat_database + bgwriter, what
#     Telegraf users run); sonde-pg-full = inputs.postgresql plus postgresql_extensible with
#     every built-in collection (size, locks, activity, replication, settings), i.e. what
#     replaces postgres_exporter's default metrics; pgexp = postgres_exporter with its defaults.
#   - Apache: sonde-apache = inputs.apache; apacheexp = apache_exporter.
#   - The exporters are scraped N times by curl over one keep-alive connection, paced at
#     INTERVAL (--rate).
# Each variant runs `runs` times, interleaved; medians are reported. Only the agent's/exporter's
# own CPU is counted, not the servers'.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

N=${1:-300}
RUNS=${2:-3}
INTERVAL=${INTERVAL:-50ms}

bench_need prometheus-postgres-exporter:prometheus-postgres-exporter \
    prometheus-apache-exporter:prometheus-apache-exporter curl:curl /usr/sbin/apache2:apache2 \
    /usr/lib/postgresql:postgresql
bench_sonde_bin
bench_workdir sonde-bench-pg
chmod 755 "$WORK"
PG_PID=""
stop_servers() {
    [ -z "$PG_PID" ] || { kill -INT "$PG_PID" 2>/dev/null && sleep 1; }
    [ ! -f "$WORK/apache/httpd.pid" ] || kill "$(cat "$WORK/apache/httpd.pid")" 2>/dev/null
}
bench_on_exit stop_servers
secs=$(awk -v i="$INTERVAL" 'BEGIN { v = i + 0; if (i ~ /ms$/) v /= 1000; print v }')
per_min=$(awk -v s="$secs" 'BEGIN { printf "%d", 60 / s }')

# ---------------------------------------------------------------- PostgreSQL
PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_PORT=$(free_port)
mkdir -p "$WORK/pg/sock"
chown -R postgres: "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$WORK/pg/initdb.log" 2>&1
runuser -u postgres -- "$PGBIN/postgres" -D "$WORK/pg/data" -p "$PG_PORT" -k "$WORK/pg/sock" \
    -c listen_addresses=127.0.0.1 -c fsync=off >"$WORK/pg/server.log" 2>&1 &
deadline=$((SECONDS + 30))
until "$PGBIN/pg_isready" -q -h "$WORK/pg/sock" -p "$PG_PORT"; do
    [ $SECONDS -lt "$deadline" ] || { cat "$WORK/pg/server.log" >&2; exit 1; }
    sleep 0.1
done
PG_PID=$(head -1 "$WORK/pg/data/postmaster.pid")
# A small application database, as in the setup this replaces.
"$PGBIN/psql" -q -h "$WORK/pg/sock" -p "$PG_PORT" -U postgres -c "CREATE DATABASE app" >/dev/null
"$PGBIN/psql" -q -h "$WORK/pg/sock" -p "$PG_PORT" -U postgres -d app \
    -c "CREATE TABLE t AS SELECT generate_series(1, 10000) AS x" >/dev/null
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"

# ---------------------------------------------------------------- Apache
AP_PORT=$(free_port)
AP="$WORK/apache"
mkdir -p "$AP/htdocs"
M=/usr/lib/apache2/modules
cat >"$AP/httpd.conf" <<EOF
ServerRoot "$AP"
ServerName 127.0.0.1
Listen 127.0.0.1:$AP_PORT
PidFile "$AP/httpd.pid"
ErrorLog "$AP/error.log"
User www-data
Group www-data
Mutex file:$AP default
DefaultRuntimeDir "$AP"
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule status_module $M/mod_status.so
ExtendedStatus On
DocumentRoot "$AP/htdocs"
<Location "/server-status">
  SetHandler server-status
  Require all granted
</Location>
EOF
/usr/sbin/apache2 -f "$AP/httpd.conf" -d "$AP" -k start
AP_URL="http://127.0.0.1:$AP_PORT/server-status?auto"
deadline=$((SECONDS + 20))
until curl -sf -o /dev/null "$AP_URL"; do
    [ $SECONDS -lt "$deadline" ] || { cat "$AP/error.log" >&2; exit 1; }
    sleep 0.1
done

# ---------------------------------------------------------------- runs
# bench_sonde <variant> → "cpu_seconds_per_collection peak_rss_kb"
bench_sonde() {
    local variant=$1 cfg="$WORK/sonde-$1.toml" out="$WORK/out-$1.lp" inputs marker
    rm -f "$out"
    case $variant in
        pg)
            inputs="[[inputs.postgresql]]
  address = \"$PG_URL\""
            marker='checkpoints_timed=' ;;
        pg-full)
            inputs="[[inputs.postgresql]]
  address = \"$PG_URL\"
[[inputs.postgresql_extensible]]
  address = \"$PG_URL\"
  database_size = true
  locks = true
  activity = true
  replication = true
  settings = [\"max_connections\", \"shared_buffers\", \"work_mem\", \"max_wal_size\", \"effective_cache_size\"]"
            marker='checkpoints_timed=' ;;
        apache)
            inputs="[[inputs.apache]]
  urls = [\"$AP_URL\"]"
            marker='^apache,' ;;
    esac
    cat >"$cfg" <<EOF
[agent]
  interval = "$INTERVAL"
  round_interval = false
  flush_interval = "$INTERVAL"
  omit_hostname = true
$inputs
[[outputs.file]]
  files = ["$out"]
EOF
    "$SONDE_BIN" --quiet --config "$cfg" </dev/null >/dev/null 2>"$WORK/sonde-$variant.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_count "$out" "$marker" 2 30
    local c0 t0 c1 t1 hwm
    c0=$(count_lines "$out" "$marker")
    t0=$(cpu_ticks "$pid")
    wait_count "$out" "$marker" $((c0 + N)) $((N * 2 + 60))
    t1=$(cpu_ticks "$pid")
    c1=$(count_lines "$out" "$marker")
    hwm=$(hwm_kb "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t=$((t1 - t0)) -v n=$((c1 - c0)) -v hz="$TICK" -v h="$hwm" \
        'BEGIN { printf "%.6f %d\n", t / hz / n, h }'
}

# bench_exporter <pgexp|apacheexp> → "cpu_seconds_per_collection peak_rss_kb"
bench_exporter() {
    local port url
    port=$(free_port)
    case $1 in
        pgexp)
            DATA_SOURCE_NAME="$PG_URL" prometheus-postgres-exporter \
                --web.listen-address="127.0.0.1:$port" --log.level=error \
                </dev/null >/dev/null 2>"$WORK/$1.log" & ;;
        apacheexp)
            prometheus-apache-exporter --telemetry.address="127.0.0.1:$port" \
                --scrape_uri="$AP_URL" --log.level=error </dev/null >/dev/null 2>"$WORK/$1.log" & ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    url="http://127.0.0.1:$port/metrics"
    local deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null "$url"; do
        [ $SECONDS -lt "$deadline" ] || { echo "$1 did not start" >&2; cat "$WORK/$1.log" >&2; return 1; }
        sleep 0.05
    done
    curl -s -o "$WORK/$1.prom" "$url"
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

VARIANTS=(sonde-pg sonde-pg-full pgexp sonde-apache apacheexp)
echo "== $N collections per run, $RUNS runs, one per $INTERVAL; $NCPUS CPUs; $(uname -r)"
echo "   sonde: $SONDE_BIN ($("$SONDE_BIN" version 2>/dev/null | head -1))"
echo "   $(prometheus-postgres-exporter --version 2>&1 | head -1)"
echo "   $(prometheus-apache-exporter --version 2>&1 | head -1)"
echo "   PostgreSQL: $("$PGBIN/postgres" --version); Apache: $(/usr/sbin/apache2 -v | head -1)"
for r in $(seq "$RUNS"); do
    for v in "${VARIANTS[@]}"; do
        case $v in
            sonde-*) res=$(bench_sonde "${v#sonde-}") ;;
            *) res=$(bench_exporter "$v") ;;
        esac
        echo "$res" >>"$WORK/$v.res"
        read -r cpu rss <<<"$res"
        printf '   run %d %-14s cpu/collection %s s, peak RSS %s kB\n' "$r" "$v" "$cpu" "$rss"
    done
done

echo "== series per collection"
per_gather() { awk -v m="$2" '$0 ~ m { k++ } END { printf "%d", NR / k }' "$1"; }
printf '   sonde-pg: %s lines, sonde-pg-full: %s lines, postgres_exporter: %s samples\n' \
    "$(per_gather "$WORK/out-pg.lp" checkpoints_timed=)" \
    "$(per_gather "$WORK/out-pg-full.lp" checkpoints_timed=)" \
    "$(grep -vc '^#' "$WORK/pgexp.prom")"
printf '   sonde-apache: 1 line of %s fields, apache_exporter: %s samples\n' \
    "$(head -1 "$WORK/out-apache.lp" | awk '{ print $2 }' | tr ',' '\n' | wc -l)" \
    "$(grep -vc '^#' "$WORK/apacheexp.prom")"

echo "== medians"
declare -A CPU RSS
for v in "${VARIANTS[@]}"; do
    CPU[$v]=$(awk '{ print $1 }' "$WORK/$v.res" | median)
    RSS[$v]=$(awk '{ print $2 }' "$WORK/$v.res" | median)
    printf '   %-14s cpu/collection %8.1f µs   peak RSS %6.1f MB\n' "$v" \
        "$(awk -v c="${CPU[$v]}" 'BEGIN { print c * 1e6 }')" \
        "$(awk -v k="${RSS[$v]}" 'BEGIN { print k / 1024 }')"
done
echo "== ratios sonde / exporter (target: CPU <= 0.5, RSS < 1)"
for pair in sonde-pg:pgexp sonde-pg-full:pgexp sonde-apache:apacheexp; do
    s=${pair%%:*} e=${pair##*:}
    printf '   %-14s / %-10s CPU %s   RSS %s\n' "$s" "$e" \
        "$(ratio "${CPU[$s]}" "${CPU[$e]}" 3)" "$(ratio "${RSS[$s]}" "${RSS[$e]}" 3)"
done
