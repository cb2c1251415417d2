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
# Each step's start says how long the run has taken so far, so CI shows where the time goes.
step() { printf '==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
step "system packages (apt), PostgreSQL, Chromium"
scripts/deps.sh test

step "web dependencies"
# `install --no-save`, not `ci`: npm 11 writes lock files without other platforms' optional
# packages, which `npm ci` then rejects; this installs exactly the locked versions.
(cd web && npm install --no-save --no-audit --no-fund)

step "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
python3 scripts/check-cycles.py --self-test crates   # a module import circle in any crate fails CI (issue 15)

step "rust build (every test and the binary, with one feature set)"
# `cargo test` builds the binary too; a separate `cargo build -p clarateach` would resolve
# features without the dev-dependencies and compile the upper half of the tree a second time.
cargo test --workspace --no-run
export CLARATEACH_BIN="$PWD/target/debug/clarateach"
step "seat images (cached by the hash of their recipes: seconds when unchanged)"
export CLARATEACH_SEAT_IMAGES=/var/cache/clarateach/seat-images
for image in base claude; do
  "$CLARATEACH_BIN" image build "$image" --images-dir "$CLARATEACH_SEAT_IMAGES"
done

step "object storage for seat volumes (s3s-fs on loopback, issue 13)"
s3_dir=$(mktemp -d /tmp/clarateach-s3.XXXXXX)
trap 'status=$?; scripts/s3.sh stop "$s3_dir"; rm -rf "$s3_dir"; (exit $status); skip_summary' EXIT
eval "$(scripts/s3.sh start "$s3_dir")"

step "rust tests (store: SQLite)"
unset CLARATEACH_TEST_DATABASE_URL
cargo test --workspace --no-fail-fast

step "store and control-plane tests again on PostgreSQL (a throwaway cluster)"
pg_dir=$(mktemp -d /tmp/clarateach-pg.XXXXXX)
# Stop the cluster at exit, then the skip summary (which keeps the exit status).
trap 'status=$?; scripts/pg.sh stop "$pg_dir"; rm -rf "$pg_dir"; scripts/s3.sh stop "$s3_dir"; rm -rf "$s3_dir"; (exit $status); skip_summary' EXIT
eval "$(scripts/pg.sh start "$pg_dir")"
# The binaries the workspace run built, run again from their package dirs (as cargo does).
pg_bins=$(scripts/test-binaries.py clarateach-store clarateach-server)
[ -n "$pg_bins" ] || { echo "no store or server test binaries found"; exit 1; }
pg_failed=0
while IFS=$'\t' read -r dir bin; do
  echo "     Running $bin (PostgreSQL)"
  (cd "$dir" && "$bin") || pg_failed=1
done <<<"$pg_bins"
# The multi-replica tests (two `serve` replicas and real agents on this cluster, issue 13) from
# the binary's package; the rest of that package ran above and needs no database.
while IFS=$'\t' read -r dir bin; do
  case "$bin" in
    */replicas_flow-*) echo "     Running $bin (PostgreSQL)"; (cd "$dir" && "$bin") || pg_failed=1 ;;
    # Three agents in network namespaces of their own (issue 13's multi-host test).
    */multihost_flow-*) echo "     Running $bin (PostgreSQL)"; (cd "$dir" && "$bin") || pg_failed=1 ;;
  esac
done <<<"$(scripts/test-binaries.py clarateach)"
[ "$pg_failed" = 0 ] || { echo "tests failed on PostgreSQL"; exit 1; }
unset CLARATEACH_TEST_DATABASE_URL
# Tests that skipped on SQLite for want of a database have just run (and passed) on it: they
# are no longer skipped.
pg_only='needs CLARATEACH_TEST_DATABASE_URL'
if grep -q "$pg_only" "$CLARATEACH_SKIP_LOG"; then
  grep "$pg_only" "$CLARATEACH_SKIP_LOG" | sort -u | sed 's/^SKIP: \([^:]*\):.*/     ran on PostgreSQL: \1/'
  grep -v "$pg_only" "$CLARATEACH_SKIP_LOG" >"$CLARATEACH_SKIP_LOG.tmp" || true
  mv "$CLARATEACH_SKIP_LOG.tmp" "$CLARATEACH_SKIP_LOG"
fi

step "fuzzing (bounded; a longer run is recorded in BENCHMARKS.md)"
scripts/fuzz.sh "${CLARATEACH_FUZZ_SECONDS:-20}"

step "schemathesis against the served OpenAPI document"
scripts/schemathesis.sh

step "web unit tests and contract checks"
(cd web && npm test)
# The web app's API types are generated from api/openapi.json; fail on drift.
(cd web && npm run check:api)
# web/dist is the production bundle cargo embedded above: it must carry no test hooks.
(cd web && npm run check:bundle)

step "web end-to-end tests (Chromium)"
# The e2e loads a build with test hooks (terminal text), served by `up --web-dir`.
(cd web && npm run build:e2e && CLARATEACH_BIN="$PWD/../target/debug/clarateach" npm run e2e)
step "all tests passed"
