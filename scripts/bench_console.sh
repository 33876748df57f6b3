#!/usr/bin/env bash
# The operator console at scale: 100,000 accounts in debt on a private
# redis-server (tools/seed_debtors.rs), the demo (release) on it, and the
# time each page takes as curl sees it (median and worst of N reads).
set -euo pipefail
cd "$(dirname "$0")/.."
DEBTORS=${DEBTORS:-100000}
N=${N:-20}
cargo build --release --quiet --example quickstart --example seed_debtors
bin=target/release/examples
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
rport=$(free_port); port=$(free_port); token="bench-console-token-0123456789"
redis-server --port "$rport" --save '' --appendonly no --loglevel warning >/dev/null 2>&1 & pids+=($!)
wait_port "$rport"
"$bin/seed_debtors" "redis://127.0.0.1:$rport" "$DEBTORS"
PASTDUE_STORE__URL="redis://127.0.0.1:$rport" PASTDUE_ADMIN__TOKEN="$token" PASTDUE_SERVER__LISTEN="127.0.0.1:$port" \
  RUST_LOG=error "$bin/quickstart" >/dev/null & pids+=($!)
wait_port "$port"
url="http://127.0.0.1:$port"
cookie=$(curl -s -o /dev/null -D - -H "Origin: $url" --data-urlencode "token=$token" "$url/admin/ui/login" | sed -n 's/^set-cookie: \(pastdue_session=[^;]*\).*/\1/ip')
[ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
time_page() {
  local path=$1 times
  times=$(for _ in $(seq 1 "$N"); do curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Cookie: $cookie" "$url$path"; done)
  grep -qv '^200 ' <<<"$times" && { echo "$path: not 200: $(grep -v '^200 ' <<<"$times" | head -1)" >&2; exit 1; }
  python3 -c "
import sys; t = sorted(float(l.split()[1]) * 1000 for l in sys.stdin.read().split('\n') if l)
print(f'  {sys.argv[1]:<40} median {t[len(t)//2]:7.1f} ms   worst {t[-1]:7.1f} ms')" "$path" <<<"$times"
}
# The demo counts the accounts at risk at start-up (a full read): let it finish.
for _ in $(seq 1 600); do curl -s -H "Cookie: $cookie" "$url/admin/ui/" | grep -q 'by the last full sweep' && break; sleep 0.1; done
echo "The console with $DEBTORS accounts in debt, $N reads each (curl, loopback):"
for path in /admin/ui/ "/admin/ui/accounts?stage=suspended" "/admin/ui/accounts?stage=suspended&sort=amount" \
  "/admin/ui/accounts?q=debtor-0500" /admin/ui/accounts/debtor-050000 /admin/ui/audit; do
  time_page "$path"
done
