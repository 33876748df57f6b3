#!/usr/bin/env bash
# Old and new builds alternated, each against a fresh private redis-server:
# webhook ingest (tools/webhook_load.rs, 20,000 signed events, 32 senders)
# and propagation (tools/propagation.rs, 2,000 samples).
#   scripts/bench_regress.sh OLD_DIR NEW_DIR
# Each directory holds a release build's examples: quickstart, webhook_load,
# propagation (build an older checkout with
# `cargo build --release --examples --features test-util`). ROUNDS (3).
set -euo pipefail
old=${1:?OLD_DIR}; new=${2:?NEW_DIR}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=(); trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
for round in $(seq 1 "${ROUNDS:-3}"); do
  for build in "$old" "$new"; do
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null & pids+=($!)
    wait_port "$redis_port"
    port=$(free_port)
    PASTDUE_SERVER__LISTEN="127.0.0.1:$port" PASTDUE_STORE__URL="redis://127.0.0.1:$redis_port" \
      PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_bench PASTDUE_ADMIN__TOKEN=bench-admin-token-0123456789 \
      "$build/quickstart" >/dev/null 2>&1 & pids+=($!)
    wait_port "$port"
    echo "round $round $build ingest: $("$build/webhook_load" "http://127.0.0.1:$port/webhooks/stripe" whsec_bench 20000 32)"
    echo "round $round $build propagation: $("$build/propagation" "redis://127.0.0.1:$redis_port" 2000)"
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
  done
done
