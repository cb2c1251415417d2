#!/usr/bin/env bash
# Installs the Debian packages ClaraTeach needs when they are missing. Sourced by run.sh and
# test.sh so a fresh Debian 12 machine needs nothing else. Pass "test" for the test-only extras.
set -euo pipefail

need=(bubblewrap nodejs npm e2fsprogs nftables iproute2)
if [ "${1:-}" = "test" ]; then
  need+=(qemu-system-x86 qemu-utils debootstrap e2fsprogs chromium python3-venv curl postgresql)
fi

missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node/npm may come from elsewhere than Debian (nodesource, nvm): accept any on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
pkgs=()
for p in "${missing[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${pkgs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# Vite 7 needs Node.js 20+; Debian 12's own nodejs is 18, so say so plainly instead of failing
# later inside the web build.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "error: Node.js 20 or newer is needed for the web UI (found: $(node --version 2>/dev/null || echo none))." >&2
  echo "       Debian 12 ships Node.js 18; add the NodeSource repository (deb.nodesource.com, node_20.x) and rerun." >&2
  exit 1
fi
