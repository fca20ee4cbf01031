#!/usr/bin/env bash
# Figures for what users install: binary, .deb, .rpm and image sizes, time from start to the
# first gather, and the resident memory of the image running its default config.
#
# Usage: tests/bench/package.sh [RUNS=20]
# Runs packaging/build.sh first (the static binary and the packages), then builds the image on
# a private Docker engine (own socket, data-root and exec-root; no bridge, no iptables).
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"
RUNS=${1:-20}

packaging/build.sh --no-image >/dev/null
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
BIN=target/x86_64-unknown-linux-musl/release/sonde
WORK=$(mktemp -d /tmp/sonde-pkgbench.XXXXXX)
DOCKERD_PID=""
cleanup() {
    if [ -n "$DOCKERD_PID" ]; then
        docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
        grep -o "$WORK/[^ ]*" /proc/self/mounts | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mb() { python3 -c "print(f'{$1/1e6:.1f} MB')"; }
echo "binary (static, stripped): $(mb "$(stat -c %s "$BIN")")"
echo ".deb: $(mb "$(stat -c %s "target/package/sonde_${VERSION}_amd64.deb")")"
echo ".rpm: $(mb "$(stat -c %s "target/package/sonde-${VERSION}-1.x86_64.rpm")")"

# Start to first gather: `sonde --test` loads the config, builds the plugins, gathers once,
# prints and exits; its whole run bounds the time to the first gather from above.
cat > "$WORK/mem.toml" <<'TOML'
[[inputs.mem]]
[[inputs.system]]
[[outputs.discard]]
TOML
python3 - "$BIN" "$WORK/mem.toml" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
binary, cfg, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run([binary, "--test", "--config", cfg], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append((time.perf_counter() - t) * 1000)
print(f"start to first gather (sonde --test, whole run, median of {runs}): {statistics.median(times):.1f} ms")
PY

# Resident memory of the embedded default config after it has gathered a few times.
steady_rss() { # pid
    sleep 25
    awk '/VmRSS/ {printf "%.1f MB\n", $2/1024}' "/proc/$1/status"
}
SONDE_LISTEN=127.0.0.1:0 "$BIN" >/dev/null 2>&1 &
NATIVE=$!
echo "RSS, default config, native binary after 25 s: $(steady_rss $NATIVE)"
kill $NATIVE; wait $NATIVE 2>/dev/null || true

if ! command -v dockerd >/dev/null; then
    echo "no dockerd: image figures skipped (tests/setup.sh installs docker.io)" >&2
    exit 1
fi
export DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_BUILDKIT=0
dockerd --host "$DOCKER_HOST" --data-root "$WORK/data" --exec-root "$WORK/exec" \
    --pidfile "$WORK/docker.pid" --iptables=false --ip6tables=false --bridge=none \
    >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.3; done
docker build -q -f packaging/Dockerfile -t sonde:bench target/package/image >/dev/null
echo "image: $(mb "$(docker image inspect -f '{{.Size}}' sonde:bench)") (Telegraf's official image: about 245 MB)"
PORT=$(free_port)
ID=$(docker run -d --network host -e SONDE_LISTEN="127.0.0.1:$PORT" sonde:bench)
PID=$(docker inspect -f '{{.State.Pid}}' "$ID")
echo "RSS, image with its default config after 25 s: $(steady_rss "$PID")"
