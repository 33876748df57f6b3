#!/usr/bin/env bash
# Instructions per forward-auth check, counted (not timed): `pastdue serve`
# (memory store) under `valgrind --tool=callgrind`, counters zeroed after
# 2,000 warm-up checks, then 10,000 keep-alive GET /check cache hits
# (X-Original-*, X-Account-Id over 1,000 accounts), dumped.
#   scripts/profile_check.sh [path/to/pastdue ...]   (default: a release build)
# Several binaries (an older build, this one) are counted one after another;
# the count is repeatable, so they need not run at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  cargo build --release --quiet --features test-util --bin pastdue
  set -- "${CARGO_TARGET_DIR:-target}/release/pastdue"
fi
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cat > "$dir/drive.py" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    c.request("GET", "/check", headers={"X-Original-Method": "GET", "X-Original-URI": "/api/ping", "X-Account-Id": f"acct-{i % 1000}"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
for bin in "$@"; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PASTDUE_SERVER__LISTEN="127.0.0.1:$port" PASTDUE_STORE__URL=memory:// \
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg" "$bin" serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  python3 "$dir/drive.py" "$port" 2000
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$dir/drive.py" "$port" 10000
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$dir/cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '%s: %d instructions per check\n' "$bin" "$((total / 10000))"
  rm -f "$dir"/cg*
done
