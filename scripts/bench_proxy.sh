#!/usr/bin/env bash
# The server as a reverse proxy's sidecar, measured against a baseline in
# the same run:
#   1. wrk through nginx to a trivial upstream (tools/bare.rs), without and
#      with auth_request to `pastdue serve` (docs/proxies/nginx.conf, the
#      tested configuration), 10,000 accounts rotated, interleaved rounds;
#   2. the sidecar's own /check latency (wrk --latency straight at /check).
# nginx, the upstream and pastdue share core 0, wrk runs on core 1 (PIN=1).
# BASELINE=path/to/an/older/pastdue adds that build behind a second copy of
# the same config, in the same interleaved rounds (old and new, one run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
server_cpu=(); client_cpu=()
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi

log() { printf '==> %s\n' "$*" >&2; }
need() {
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] && return 0
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else echo "missing $1: sudo apt-get install $2" >&2; exit 1; fi
}
need wrk wrk
need nginx nginx
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
dir=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

log "building release binaries"
cargo build --release --quiet --features test-util --bin pastdue --example bare
bin="${CARGO_TARGET_DIR:-target}/release"

app_port=$(free_port); pastdue_port=$(free_port); gated_port=$(free_port); plain_port=$(free_port)
PASTDUE_SERVER__LISTEN="127.0.0.1:$app_port" "${server_cpu[@]}" "$bin/examples/bare" >/dev/null & pids+=($!)
PASTDUE_SERVER__LISTEN="127.0.0.1:$pastdue_port" PASTDUE_CHECK__DENY_STATUS=403 "${server_cpu[@]}" "$bin/pastdue" serve >/dev/null & pids+=($!)
wait_port "$app_port"; wait_port "$pastdue_port"

sed -e "s/127.0.0.1:3000/127.0.0.1:$pastdue_port/; s/127.0.0.1:8080/127.0.0.1:$app_port/; s/listen 8000;/listen 127.0.0.1:$gated_port;/" \
  docs/proxies/nginx.conf > "$dir/gated.conf"
targets=(plain gated)
if [ -n "${BASELINE:-}" ]; then
  baseline_port=$(free_port); old_pastdue_port=$(free_port)
  PASTDUE_SERVER__LISTEN="127.0.0.1:$old_pastdue_port" PASTDUE_CHECK__DENY_STATUS=403 "${server_cpu[@]}" "$BASELINE" serve >/dev/null & pids+=($!)
  wait_port "$old_pastdue_port"
  # The same config, its upstreams renamed so both fit one nginx.
  sed -e "s/127.0.0.1:3000/127.0.0.1:$old_pastdue_port/; s/127.0.0.1:8080/127.0.0.1:$app_port/; s/listen 8000;/listen 127.0.0.1:$baseline_port;/" \
    -e "s/upstream pastdue/upstream old_pastdue/; s#http://pastdue#http://old_pastdue#; s/upstream app/upstream old_app/; s#http://app#http://old_app#" \
    docs/proxies/nginx.conf > "$dir/baseline.conf"
  targets+=(baseline)
fi
# The baseline: the same nginx and upstream (kept-alive), no check.
cat > "$dir/plain.conf" <<CONF
upstream plain_app { server 127.0.0.1:$app_port; keepalive 32; }
server {
    listen 127.0.0.1:$plain_port;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location / { proxy_pass http://plain_app; }
}
CONF
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  include $dir/gated.conf;
  include $dir/plain.conf;
  include $dir/baseline.con[f];
}
CONF
"${server_cpu[@]}" "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" & pids+=($!)
wait_port "$gated_port"; wait_port "$plain_port"; [ -z "${BASELINE:-}" ] || wait_port "$baseline_port"
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Account-Id: acct-1' "http://127.0.0.1:$gated_port/api/ping")
[ "$status" = 200 ] || { echo "the gated nginx answered $status" >&2; exit 1; }

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for target in "${targets[@]}"; do
    port_var="${target}_port"
    rps=$("${client_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s scripts/accounts.lua "http://127.0.0.1:${!port_var}/api/ping" \
      | awk '/Requests\/sec/ {print $2}')
    log "round $round: nginx $target $rps req/s"
    results[$target]="${results[$target]:-} $rps"
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
plain=$(median "${results[plain]}"); gated=$(median "${results[gated]}")
echo
echo "nginx → upstream GET /api/ping, 10,000 accounts, wrk -t1 -c$CONNECTIONS -d$DURATION, median of $ROUNDS interleaved rounds (PIN=$PIN)"
printf '  without auth_request  %10.0f req/s\n  with auth_request     %10.0f req/s\n' "$plain" "$gated"
python3 -c "print(f'  with/without = {$gated/$plain:.3f}')"
if [ -n "${BASELINE:-}" ]; then
  baseline=$(median "${results[baseline]}")
  printf '  with auth_request, BASELINE  %10.0f req/s\n' "$baseline"
  python3 -c "print(f'  BASELINE with/without = {$baseline/$plain:.3f}; this build / BASELINE = {$gated/$baseline:.3f}')"
fi

echo
echo "The sidecar's own GET /check, straight at pastdue (wrk --latency; -c1 is one request in flight, the latency a"
echo "proxy sees; -c8 saturates it for throughput):"
for c in 1 8; do
  "${client_cpu[@]}" wrk -t1 -c"$c" -d"$DURATION" --latency -s scripts/check.lua "http://127.0.0.1:$pastdue_port/check" \
    | awk -v c="$c" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {printf "  -c%s  %10.0f req/s  p50 %s  p99 %s\n", c, rps, p50, p99}'
done
if [ -n "${BASELINE:-}" ]; then
  echo "  BASELINE's own GET /check, the same way:"
  for c in 1 8; do
    "${client_cpu[@]}" wrk -t1 -c"$c" -d"$DURATION" --latency -s scripts/check.lua "http://127.0.0.1:$old_pastdue_port/check" \
      | awk -v c="$c" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {printf "  -c%s  %10.0f req/s  p50 %s  p99 %s\n", c, rps, p50, p99}'
  done
fi
