#!/usr/bin/env bash
# Bounded libFuzzer runs (cargo-fuzz) of every target in fuzz/: path confinement of the daemon's
# file API against planted symlinks, terminal protocol frames, join/reconnect code normalisation,
# and agent protocol messages. Any panic or escape fails. Usage: scripts/fuzz.sh [SECONDS_EACH]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi
# libFuzzer needs nightly's -Z flags; without a nightly toolchain, stable with RUSTC_BOOTSTRAP.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# Safe Rust: the targets look for panics and escapes, not memory errors, so no sanitizer (10x
# the executions per second).
cd fuzz
"${fuzz[@]}" build -O -s none
for target in $("${fuzz[@]}" list); do
  echo "==> fuzz $target for ${secs}s"
  log="target/fuzz-$target.log"
  mkdir -p target
  status=0
  "${fuzz[@]}" run -O -s none "$target" -- -max_total_time="$secs" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units)|panicked|ERROR|SUMMARY' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz target $target failed (crash input in fuzz/artifacts/$target/)"
    exit 1
  fi
done
