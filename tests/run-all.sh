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

echo "== the static build's memcpy/memcmp (sonde-memfns) and allocator (sonde-alloc) under musl"
# The workspace tests above run them on the glibc build; here memfns are the C symbols and
# the whole test binary runs on them, as the shipped binary does.
CC_x86_64_unknown_linux_musl=musl-gcc cargo test --locked --release -p sonde-memfns \
    -p sonde-alloc --target x86_64-unknown-linux-musl

echo "== fuzz (bounded: the hostile-input targets again with more cases, about 60-120 s)"
# Property tests over arbitrary and mutated bytes for every parser, the config loader, the
# glob matchers and the statsd line parser, then the running listeners under generated
# hostile requests. SONDE_FUZZ_CASES scales the parser targets (case counts, not time).
# --workspace, as in the build above: with -p, cargo resolves the dependencies' features for
# that package alone and builds them all again (minutes).
fuzz_cases="${SONDE_FUZZ_CASES:-5000}"
fuzz_start=$SECONDS
PROPTEST_CASES="$fuzz_cases" cargo test --locked --workspace --test fuzz_parsers
PROPTEST_CASES="$fuzz_cases" cargo test --locked --workspace --lib -- \
    fuzz_tests like_agrees_with_the_reference paths_never_panic glob_agrees_with_the_reference
PROPTEST_CASES="${SONDE_FUZZ_LISTENER_CASES:-5000}" cargo test --locked --workspace \
    --test hostile listeners_keep_answering_under_hostile_requests -- --nocapture
echo "fuzz step: $((SECONDS - fuzz_start)) s"
