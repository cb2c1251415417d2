#!/usr/bin/env bash
# Runs every test from a fresh Debian 12 machine: installs missing packages (apt, npm), then
# format and lint checks, the Rust test suite (real servers, PTYs, sandboxes, QEMU under TCG) and
# the web unit and end-to-end tests (Debian's Chromium driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that cannot run here (no root, no KVM, a missing tool) return early; each appends a
# `SKIP: <test>: <why>` line to this file (clarateach_core::skip::report), and the summary at the
# end lists them, so a skip never reads as a pass. Printed on failure too.
mkdir -p target
export CLARATEACH_SKIP_LOG="${CLARATEACH_SKIP_LOG:-$PWD/target/skipped-tests.txt}"
: >"$CLARATEACH_SKIP_LOG"
skip_summary() {
    local status=$?
    echo "==> skipped tests"
    if [ -s "$CLARATEACH_SKIP_LOG" ]; then
        sort -u "$CLARATEACH_SKIP_LOG"
        echo "$(sort -u "$CLARATEACH_SKIP_LOG" | wc -l) test(s) skipped (list in $CLARATEACH_SKIP_LOG)"
    else
        echo "none"
    fi
    return "$status"
}
trap skip_summary EXIT
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
scripts/deps.sh test

echo "==> web dependencies"
# `install --no-save`, not `ci`: npm 11 writes lock files without other platforms' optional
# packages, which `npm ci` then rejects; this installs exactly the locked versions.
(cd web && npm install --no-save --no-audit --no-fund)

echo "==> cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "==> rust tests (store: SQLite)"
cargo build -p clarateach
export CLARATEACH_BIN="$PWD/target/debug/clarateach"
echo "==> seat images (cached by the hash of their recipes: seconds when unchanged)"
export CLARATEACH_SEAT_IMAGES=/var/cache/clarateach/seat-images
for image in base claude; do
  "$CLARATEACH_BIN" image build "$image" --images-dir "$CLARATEACH_SEAT_IMAGES"
done

unset CLARATEACH_TEST_DATABASE_URL
cargo test --workspace --no-fail-fast

echo "==> store and control-plane tests again on PostgreSQL (a throwaway cluster)"
pg_dir=$(mktemp -d /tmp/clarateach-pg.XXXXXX)
# Stop the cluster at exit, then the skip summary (which keeps the exit status).
trap 'status=$?; scripts/pg.sh stop "$pg_dir"; rm -rf "$pg_dir"; (exit $status); skip_summary' EXIT
eval "$(scripts/pg.sh start "$pg_dir")"
cargo test -p clarateach-store -p clarateach-server --no-fail-fast
unset CLARATEACH_TEST_DATABASE_URL

echo "==> fuzzing (bounded; a longer run is recorded in BENCHMARKS.md)"
scripts/fuzz.sh "${CLARATEACH_FUZZ_SECONDS:-20}"

echo "==> schemathesis against the served OpenAPI document"
scripts/schemathesis.sh

echo "==> web unit tests and contract checks"
(cd web && npm test)
# The web app's API types are generated from api/openapi.json; fail on drift.
(cd web && npm run check:api)
# web/dist is the production bundle cargo embedded above: it must carry no test hooks.
(cd web && npm run check:bundle)

echo "==> web end-to-end tests (Chromium)"
# The e2e loads a build with test hooks (terminal text), served by `up --web-dir`.
(cd web && npm run build:e2e && CLARATEACH_BIN="$PWD/../target/debug/clarateach" npm run e2e)
echo "==> all tests passed"
