#!/usr/bin/env bash
# Installs what the test suite needs and is missing: the pinned toolchain's components and the
# Debian packages of the servers the end-to-end tests run against. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain pinned in rust-toolchain.toml (rustup installs it on first use).
rustup show active-toolchain >/dev/null

need_pkgs=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }
# Servers the end-to-end tests start themselves (tests/src/servers.rs), one per test.
want influxdb
want victoria-metrics
want python3-venv
want prometheus
want prometheus-node-exporter
# IANA time zones for json_timezone (plugins/src/common/timestamp.rs tests, tests/tests/parsers.rs).
want tzdata
# Packaging (packaging/build.sh and tests/tests/packaging.rs): the static build's C compiler,
# package tools and checkers, and a Docker engine with a static busybox for test images.
want musl-tools
want rpm
want lintian
want file
want man-db
want systemd
want docker.io
want busybox-static
# The alert chain of the crypto e2e (tests/tests/web.rs); promtool comes with prometheus.
want prometheus-alertmanager
# Peers of the probe inputs (tests/src/probes.rs): Apache with mod_ssl, dnsmasq, blackbox_exporter.
want apache2
want dnsmasq-base
want prometheus-blackbox-exporter
# PostgreSQL (run as the postgres user) and Apache (above) with mod_status, for tests/tests/pgapache.rs;
# openssl makes their test certificates and password hashes.
want postgresql
# The docker input test reads the engine's own stats endpoint over its socket.
want curl
# inputs.procstat's default pid finder runs pgrep; its supervisor_units test runs a private
# supervisord (supervisorctl status).
want procps
want supervisor
# inputs.net's rename test makes a veth pair in a network namespace of its own (ip, unshare).
want iproute2
want util-linux
# The docker TLS test makes its CA and certificates with openssl; tests/tests/http_client.rs
# runs `openssl s_server` as its TLS 1.2-only server (and python3, from python3-venv, as the
# independent SigV4 verifier).
want openssl
# curl and openssl s_client are also the mutual-TLS clients of tests/tests/ingest.rs, where a
# batch job pushes with Debian's Prometheus Python client (run with /usr/bin/python3).
want python3-prometheus-client

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# The Python packages the tests use, in a venv of their own: the InfluxDB client the listener
# tests write with, and moto's server (the AWS API: CloudWatch, STS) with boto3 for the
# CloudWatch tests.
if [ ! -x tests/.venv/bin/python ] \
    || ! tests/.venv/bin/python -c 'import influxdb_client, moto.server, boto3, flask' 2>/dev/null; then
    echo "== installing influxdb-client and moto[server] into tests/.venv"
    python3 -m venv tests/.venv
    tests/.venv/bin/pip install -q influxdb-client 'moto[server]'
fi
