#!/usr/bin/env bash
# Runs every test from a fresh Debian 12 machine: installs missing packages (apt, npm), then
# format and lint checks, the Rust test suite (real servers, PTYs, sandboxes, QEMU under TCG) and
# the web unit and end-to-end tests (Debian's Chromium driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
scripts/deps.sh test

echo "==> web dependencies"
# `install --no-save`, not `ci`: npm 11 writes lock files without other platforms' optional
# packages, which `npm ci` then rejects; this installs exactly the locked versions.
(cd web && npm install --no-save --no-audit --no-fund)

echo "==> cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "==> rust tests"
cargo build -p clarateach
export CLARATEACH_BIN="$PWD/target/debug/clarateach"

echo "==> seat images (cached by the hash of their recipes: seconds when unchanged)"
export CLARATEACH_SEAT_IMAGES=/var/cache/clarateach/seat-images
for image in base claude; do
  "$CLARATEACH_BIN" image build "$image" --images-dir "$CLARATEACH_SEAT_IMAGES"
done
cargo test --workspace --no-fail-fast

echo "==> fuzzing (bounded; a longer run is recorded in BENCHMARKS.md)"
scripts/fuzz.sh "${CLARATEACH_FUZZ_SECONDS:-20}"

echo "==> schemathesis against the served OpenAPI document"
scripts/schemathesis.sh

echo "==> web unit tests"
(cd web && npm test)

echo "==> web end-to-end tests (Chromium)"
(cd web && CLARATEACH_BIN="$PWD/../target/debug/clarateach" npm run e2e)
echo "==> all tests passed"
