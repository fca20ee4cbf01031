#!/usr/bin/env bash
# Runs every test of sonde on a fresh machine: installs what is missing, builds, tests.
# Usage: tests/run-all.sh [extra nextest/cargo-test filter args]
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh

echo "== build"
cargo build --workspace --all-targets --locked

echo "== packages (static binary, .deb, .rpm, image context)"
packaging/build.sh --no-image

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
