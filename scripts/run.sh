#!/usr/bin/env bash
# Quick start: installs what is missing, builds (web UI included) and runs `clarateach up`.
# Extra arguments go to `clarateach up`, e.g. scripts/run.sh --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# Builds both binaries of the package: `clarateach` and the daemon-only
# `clarateach-workspace-server` that sandbox seats run (`cargo run` would build only the first).
cargo build --release -p clarateach
exec target/release/clarateach up "$@"
