#!/usr/bin/env bash
# Webhook ingest, before and after, in one run: the demo built from this
# checkout and (BASELINE=/path/to/an/older/quickstart) an older build, each
# on its own fresh redis-server, in interleaved rounds; tools/webhook_load.rs
# posts signed unique events: failures only, then failure/payment pairs
# (each pair opens and ends a debt episode, what the recovery figures record).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
EVENTS=${EVENTS:-20000}
BASELINE=${BASELINE:-}
# AFTER=/path/to/a/quickstart measures that build instead of this checkout's
# (LOAD= the webhook_load to use); both default to a fresh release build.
AFTER=${AFTER:-}
bin=target/release/examples
if [ -z "$AFTER" ]; then cargo build --release --quiet --example quickstart --example webhook_load; fi
AFTER=${AFTER:-$bin/quickstart}
LOAD=${LOAD:-$bin/webhook_load}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# One measurement: a fresh Redis and server, one load, both stopped.
run() {
  local server=$1 mode=$2 rport port rpid spid
  rport=$(free_port); port=$(free_port)
  redis-server --port "$rport" --save '' --appendonly no --loglevel warning >/dev/null 2>&1 & rpid=$!; pids+=("$rpid")
  wait_port "$rport"
  local provider=${3:-stripe} secret=whsec_bench
  # Only the endpoint under load is configured: an older build (BASELINE)
  # refuses settings it does not know.
  local env=(PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_bench)
  case $provider in
    paddle) secret=pdl_ntfset_bench; env=(PASTDUE_PADDLE__WEBHOOK_SECRET=$secret) ;;
    events) secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw; env=(PASTDUE_EVENTS__WEBHOOK_SECRET=$secret) ;;
  esac
  env PASTDUE_STORE__URL="redis://127.0.0.1:$rport" "${env[@]}" \
    PASTDUE_SERVER__LISTEN="127.0.0.1:$port" RUST_LOG=error "$server" >/dev/null & spid=$!; pids+=("$spid")
  wait_port "$port" || { echo "the server did not start"; kill "$rpid"; return 0; }
  "$LOAD" "http://127.0.0.1:$port/webhooks/$provider" "$secret" "$EVENTS" 32 $mode
  kill "$spid" "$rpid"; wait "$spid" "$rpid" 2>/dev/null || true
}

# PROVIDERS=1: the same story through each provider's endpoint, this
# checkout only, in interleaved rounds.
if [ -n "${PROVIDERS:-}" ]; then
  for mode in "" pay; do
    echo "== per provider, ${mode:-failures only}: $EVENTS events, 32 senders, $ROUNDS interleaved rounds"
    for r in $(seq 1 "$ROUNDS"); do
      for provider in stripe paddle events; do echo "  $provider: $(run "$AFTER" "$mode" "$provider")"; done
    done
  done
  exit 0
fi

for mode in "" pay; do
  echo "== ${mode:-failures only}: $EVENTS events, 32 senders, $ROUNDS interleaved rounds"
  for r in $(seq 1 "$ROUNDS"); do
    if [ -n "$BASELINE" ]; then echo "  before: $(run "$BASELINE" "$mode")"; fi
    echo "  after:  $(run "$AFTER" "$mode")"
  done
done
