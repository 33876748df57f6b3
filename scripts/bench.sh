#!/usr/bin/env bash
# Whole-server numbers, measured against baselines in the same run:
#   1. wrk on GET /api/ping, 10,000 accounts (2% blocked), interleaved rounds:
#      bare (no gate) / naive (one Redis GET per request) / pastdue (the demo)
#   2. webhook ingest: signed unique events, events/s and p99
#   3. propagation: a write on instance A seen by instance B, p50/p99
#   4. resident memory per cached account at 1,000,000 accounts
# Everything runs on loopback against a private redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
# BASELINE=/path/to/an/older/quickstart: also run that build (with and
# without accounts) in the same interleaved rounds, so before/after is one
# run's comparison. Build it from an older checkout with its own config/ and
# templates/ (they are compiled in).
BASELINE=${BASELINE:-}
# PIN=1 (the default with 2+ cores): the servers on core 0, wrk on core 1,
# so load generator and server do not steal each other's cycles and the
# ratios measure the server's own cost per request. PIN=0 lets them float.
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
server_cpu=(); client_cpu=()
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi

log() { printf '==> %s\n' "$*" >&2; }
need() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else echo "missing $1: sudo apt-get install $2" >&2; exit 1; fi
}
need wrk wrk
need redis-server redis-server
need curl curl

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

log "building release examples"
cargo build --release --quiet --examples --features test-util
bin="${CARGO_TARGET_DIR:-target}/release/examples"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null & pids+=($!)
wait_port "$redis_port"
redis_url="redis://127.0.0.1:$redis_port"

bare_port=$(free_port); naive_port=$(free_port); pastdue_port=$(free_port)
PASTDUE_SERVER__LISTEN="127.0.0.1:$bare_port" "${server_cpu[@]}" "$bin/bare" >/dev/null & pids+=($!)
PASTDUE_SERVER__LISTEN="127.0.0.1:$naive_port" PASTDUE_STORE__URL="$redis_url" "${server_cpu[@]}" "$bin/naive" >/dev/null & pids+=($!)
PASTDUE_SERVER__LISTEN="127.0.0.1:$pastdue_port" PASTDUE_STORE__URL="$redis_url" \
  PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_bench PASTDUE_ADMIN__TOKEN=bench-admin-token-0123456789 "${server_cpu[@]}" "$bin/quickstart" >/dev/null & pids+=($!)
pastdue_pid=$!
targets="bare naive noaccount pastdue"
if [ -n "$BASELINE" ]; then
  baseline_port=$(free_port)
  PASTDUE_SERVER__LISTEN="127.0.0.1:$baseline_port" PASTDUE_STORE__URL="$redis_url" \
    PASTDUE_ADMIN__TOKEN=bench-admin-token-0123456789 "${server_cpu[@]}" "$BASELINE" >/dev/null & pids+=($!)
  wait_port "$baseline_port"
  targets="$targets baseline_noaccount baseline"
fi
for p in "$bare_port" "$naive_port" "$pastdue_port"; do wait_port "$p"; done

log "blocking 2% of the 10,000 accounts (every 50th) in both gates"
for i in $(seq 0 50 9999); do
  redis-cli -p "$redis_port" SET "naive:acct-$i" blocked >/dev/null
  curl -sf -XPOST -H "Authorization: Bearer bench-admin-token-0123456789" "http://127.0.0.1:$pastdue_port/demo/invoice-failed?account=acct-$i&days_ago=30" >/dev/null
done
blocked=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Account-Id: acct-50' "http://127.0.0.1:$pastdue_port/api/ping")
[ "$blocked" = 402 ] || { echo "acct-50 should be blocked, got $blocked" >&2; exit 1; }

declare -A results paired this_round
for round in $(seq 1 "$ROUNDS"); do
  for target in $targets; do
    # noaccount: the demo, requests without an account (the gate resolves
    # nothing and passes): what the app costs apart from the gate's lookup.
    if [ "$target" = noaccount ] || [ "$target" = baseline_noaccount ]; then
      port_var="${target%noaccount}port"; [ "$port_var" = port ] && port_var=pastdue_port
      rps=$("${client_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s scripts/no_accounts.lua "http://127.0.0.1:${!port_var}/api/ping" \
        | awk '/Requests\/sec/ {print $2}')
    else
      port_var="${target}_port"
      rps=$("${client_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s scripts/accounts.lua "http://127.0.0.1:${!port_var}/api/ping" \
        | awk '/Requests\/sec/ {print $2}')
    fi
    log "round $round: $target $rps req/s"
    results[$target]="${results[$target]:-} $rps"
    this_round[$target]=$rps
  done
  # Ratios within a round compare runs seconds apart, so a slow drift of
  # the machine (these are shared) moves both sides; their median is the
  # figure to quote, the medians of raw rates beside it.
  paired[pastdue_bare]="${paired[pastdue_bare]:-} $(python3 -c "print(${this_round[pastdue]}/${this_round[bare]})")"
  paired[pastdue_noaccount]="${paired[pastdue_noaccount]:-} $(python3 -c "print(${this_round[pastdue]}/${this_round[noaccount]})")"
  if [ -n "$BASELINE" ]; then
    paired[baseline_bare]="${paired[baseline_bare]:-} $(python3 -c "print(${this_round[baseline]}/${this_round[bare]})")"
    paired[baseline_noaccount]="${paired[baseline_noaccount]:-} $(python3 -c "print(${this_round[baseline]}/${this_round[baseline_noaccount]})")"
  fi
done
spread() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {m=(NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.3f (%.3f-%.3f)", m, a[1], a[NR]}'; }
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
bare=$(median "${results[bare]}"); naive=$(median "${results[naive]}"); pd=$(median "${results[pastdue]}"); noacct=$(median "${results[noaccount]}")
echo
echo "GET /api/ping, 10,000 accounts, 2% blocked, wrk -t1 -c$CONNECTIONS -d$DURATION, median of $ROUNDS interleaved rounds (PIN=$PIN)"
printf '  bare       %10.0f req/s\n  naive      %10.0f req/s\n  noaccount  %10.0f req/s\n  pastdue    %10.0f req/s\n' "$bare" "$naive" "$noacct" "$pd"
python3 -c "print(f'  pastdue/bare = {$pd/$bare:.3f}   pastdue/noaccount = {$pd/$noacct:.3f}   pastdue/naive = {$pd/$naive:.2f}   naive/bare = {$naive/$bare:.3f}')"
printf '  per-round ratios, median (min-max): pastdue/bare %s   pastdue/noaccount %s\n' \
  "$(spread "${paired[pastdue_bare]}")" "$(spread "${paired[pastdue_noaccount]}")"
if [ -n "$BASELINE" ]; then
  base=$(median "${results[baseline]}"); base_noacct=$(median "${results[baseline_noaccount]}")
  printf '  baseline (%s): %.0f req/s, without accounts %.0f req/s\n' "$BASELINE" "$base" "$base_noacct"
  python3 -c "print(f'  baseline/bare = {$base/$bare:.3f}   baseline/its noaccount = {$base/$base_noacct:.3f}   pastdue/baseline = {$pd/$base:.3f}')"
  printf '  baseline per-round ratios, median (min-max): baseline/bare %s   baseline/its noaccount %s\n' \
    "$(spread "${paired[baseline_bare]}")" "$(spread "${paired[baseline_noaccount]}")"
fi

# The rest measures the server alone: let it use every core again.
if [ "$PIN" = 1 ]; then taskset -a -p -c "0-$(($(nproc) - 1))" "$pastdue_pid" >/dev/null; fi

echo
echo "Webhook ingest (one instance, local Redis, signed unique events):"
"$bin/webhook_load" "http://127.0.0.1:$pastdue_port/webhooks/stripe" whsec_bench "${EVENTS:-20000}" 32 | sed 's/^/  /'

echo
echo "Propagation (write through instance A, seen by instance B's listener):"
"$bin/propagation" "$redis_url" 2000 | sed 's/^/  /'

echo
echo "Memory per cached account:"
"$bin/cache_memory" "${ACCOUNTS:-1000000}" | sed 's/^/  /'
