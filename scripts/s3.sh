#!/usr/bin/env bash
# A throwaway S3-compatible server for tests (s3s-fs, a real S3 API over a directory): installs
# it once (cached under $HOME/.cache/clarateach/s3s-0.14.1), starts it on 127.0.0.1 on a free
# port with a temp dir, fresh test credentials and a bucket, and prints what the tests read.
#
#   eval "$(scripts/s3.sh start DIR)"   # exports CLARATEACH_TEST_OBJECT_STORE, AWS_*, S3_DIR
#   scripts/s3.sh stop DIR              # stops the server (call it from a trap)
#
# Nothing outside DIR is written except the cached binary. s3s-fs 0.14.1: 0.17 needs rustc 1.96.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
version=0.14.1
cache="${CLARATEACH_S3S_ROOT:-$HOME/.cache/clarateach/s3s-$version}"
bin="$cache/bin/s3s-fs"

case "$cmd" in
start)
  if ! [ -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$version"; then
    echo "installing s3s-fs $version into $cache" >&2
    cargo install s3s-fs@"$version" --locked --features binary --root "$cache" >&2
  fi
  mkdir -p "$dir/data"
  bucket=clarateach-test
  mkdir -p "$dir/data/$bucket"
  access=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  secret=$(head -c 24 /dev/urandom | base64 | tr -d '+/=')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Credentials on the command line of a test server on loopback, in a private temp dir.
  nohup "$bin" --host 127.0.0.1 --port "$port" --access-key "$access" --secret-key "$secret" \
    "$dir/data" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then
      break
    fi
    sleep 0.1
  done
  echo "export S3_DIR='$dir'"
  echo "export CLARATEACH_TEST_OBJECT_STORE='s3://$bucket/ct'"
  echo "export AWS_ENDPOINT_URL='http://127.0.0.1:$port'"
  echo "export AWS_REGION='us-east-1'"
  echo "export AWS_ACCESS_KEY_ID='$access'"
  echo "export AWS_SECRET_ACCESS_KEY='$secret'"
  echo "export AWS_ALLOW_HTTP='true'"
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
