#!/usr/bin/env bash
# What idle notifier instances cost Redis, with many debtors whose notices
# are all sent: DEBTORS accounts seeded (tools/seed_debtors.rs), two demo
# instances with a notice channel on, then Redis commands/s (INFO stats)
# and the instances' CPU over WINDOW seconds, after the first full sweep.
#   QUICKSTART=path/to/quickstart  compares another build (e.g. an older one)
set -euo pipefail
cd "$(dirname "$0")/.."
DEBTORS=${DEBTORS:-100000}
WINDOW=${WINDOW:-10}
SETTLE=${SETTLE:-20}
log() { printf '==> %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cargo build --release --quiet --features test-util --example seed_debtors --example quickstart
bin="${CARGO_TARGET_DIR:-target}/release/examples"
quickstart=${QUICKSTART:-$bin/quickstart}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null & pids+=($!)
wait_port "$redis_port"
redis_url="redis://127.0.0.1:$redis_port"
log "seeding $DEBTORS debtors"
"$bin/seed_debtors" "$redis_url" "$DEBTORS" >&2

instances=()
for _ in 1 2; do
  port=$(free_port)
  # A webhook channel (to a port nobody listens on: every notice is already recorded).
  PASTDUE_SERVER__LISTEN="127.0.0.1:$port" PASTDUE_STORE__URL="$redis_url" PASTDUE_ADMIN__TOKEN=bench-admin-token-0123456789 \
    PASTDUE_NOTIFY__WEBHOOK_URL="http://127.0.0.1:9/" PASTDUE_NOTIFY__WEBHOOK_SECRET=whsec_idle \
    "$quickstart" >/dev/null & pids+=($!); instances+=($!)
  wait_port "$port"
done
log "letting the first full sweeps run (${SETTLE}s)"
sleep "$SETTLE"
commands() { redis-cli -p "$redis_port" INFO stats | awk -F: '/^total_commands_processed/ {print $2+0}'; }
ticks() { local t=0; for p in "${instances[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
c0=$(commands); t0=$(ticks)
sleep "$WINDOW"
c1=$(commands); t1=$(ticks)
hz=$(getconf CLK_TCK)
python3 -c "print(f'$DEBTORS debtors, two idle instances, {$WINDOW} s: {($c1-$c0)/$WINDOW:.0f} Redis commands/s, {100*($t1-$t0)/$hz/$WINDOW:.1f} % of one core (both instances together)')"
