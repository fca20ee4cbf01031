#!/usr/bin/env bash
# Installs what the test suite needs and is missing: the pinned toolchain's components and the
# Debian packages of the servers the end-to-end tests run against. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain pinned in rust-toolchain.toml (rustup installs it on first use).
rustup show active-toolchain >/dev/null

need_pkgs=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }
# Nothing beyond the base machine is needed by the foundation's tests yet; servers for later
# suites are added here with `want <debian-package>`.
want prometheus
want prometheus-node-exporter
want victoria-metrics

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
