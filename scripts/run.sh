#!/usr/bin/env bash
# Quick start: installs what is missing, builds (web UI included) and runs `clarateach up`.
# Extra arguments go to `clarateach up`, e.g. scripts/run.sh --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec cargo run --release -p clarateach -- up "$@"
