#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: initdb into DIR as the unprivileged `postgres` user
# (created if missing), listening on 127.0.0.1 only, on a free port, with a random password.
#
#   eval "$(scripts/pg.sh start DIR)"   # exports CLARATEACH_TEST_DATABASE_URL (and PG_DIR)
#                                       # DIR: a new directory (e.g. mktemp -d) in a world-traversable parent
#   scripts/pg.sh stop DIR              # stops the cluster (call it from a trap)
#
# Nothing outside DIR is written except the `postgres` system user. Needs Debian's
# `postgresql` package (scripts/deps.sh test installs it).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

bin=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && bin="$d"
done
if [ -z "$bin" ]; then
  echo "error: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  password=$(head -c 18 /dev/urandom | base64 | tr -d '+/=')
  printf '%s\n' "$password" >"$dir/pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/pwfile"
  as_pg "$bin/initdb" -D "$dir/data" -U clarateach --pwfile="$dir/pwfile" \
    --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }
  rm -f "$dir/pwfile"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Tests open many pools at once (one database per test); fsync off: a throwaway cluster.
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=500 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  echo "export PG_DIR='$dir'"
  echo "export CLARATEACH_TEST_DATABASE_URL='postgres://clarateach:$password@127.0.0.1:$port/postgres'"
  ;;
stop)
  if [ -d "$dir/data" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
