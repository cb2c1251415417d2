#!/usr/bin/env bash
# Property-based API testing with Schemathesis (PyPI) against the OpenAPI document the server
# itself serves: 0 server errors and 0 responses outside their documented schema, as the
# instructor (every /api/workshops route on a running workshop) and as a learner (every
# /api/session route through the real gateway into a real sandbox seat). Bounded: about a minute.
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES]   (CLARATEACH_BIN: the binary to test)
set -euo pipefail
cd "$(dirname "$0")/.."
max_examples="${1:-20}"
bin="${CLARATEACH_BIN:-$PWD/target/debug/clarateach}"
venv="$PWD/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==4.32.5"
fi
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" up --listen "127.0.0.1:$port" --data-dir "$data" >"$data/up.log" 2>&1 &
up_pid=$!
cleanup() {
  kill "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
  # Seat file systems stay mounted after `up` stops (files are kept): unmount them first.
  findmnt -rn -o TARGET | grep "^$data/" | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$base/api/health" >/dev/null && break; sleep 0.1; done
token=$(cat "$data/instructor.token")
api() { curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
ws=$(api -d '{"name":"schemathesis","seats":3}' "$base/api/workshops" | python3 -c 'import json,sys; print(json.load(sys.stdin)["workshop"]["id"])')
api -X POST "$base/api/workshops/$ws/start" >/dev/null
for _ in $(seq 1 300); do
  api "$base/api/workshops/$ws" | grep -q '"status":"running"' && break; sleep 0.1
done
if ! api "$base/api/workshops/$ws" | grep -q '"status":"running"'; then
  echo "schemathesis: the workshop never ran; clarateach up said:" >&2
  tail -20 "$data/up.log" >&2
  exit 1
fi
code=$(api "$base/api/workshops/$ws" | python3 -c 'import json,sys; print(json.load(sys.stdin)["workshop"]["code"])')
learner=$(curl -sf -H 'content-type: application/json' -d "{\"code\":\"$code\"}" "$base/api/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
cfg="$data/schemathesis.toml"
printf '[parameters]\nid = "%s"\n' "$ws" > "$cfg"
run() {
  "$venv/bin/schemathesis" --config-file "$cfg" run "$base/api/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "$max_examples" --phases coverage,fuzzing --workers 2 \
    --exclude-path-regex '^/api/(session/terminal|session/files/watch|agents/connect|workshops/\{id\}/stop)$' \
    --seed 1 "$@"
}
echo "==> schemathesis as the instructor"
run -H "Authorization: Bearer $token" --include-path-regex '^/(api/(workshops|agents|health|openapi)|metrics)'
echo "==> schemathesis as a learner"
run -H "Authorization: Bearer $learner" --include-path-regex '^/api/(session|me|join)'
