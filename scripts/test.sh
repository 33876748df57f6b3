#!/usr/bin/env bash
# The test command: installs what a fresh Debian machine lacks, then runs
# every test. Tests start their own redis-server processes on free ports;
# they never touch a Redis they did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $*. Install with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  log "installing $* (apt-get)"
  if [ -z "${APT_UPDATED_BY_TEST_SH:-}" ]; then
    apt-get update -qq
    export APT_UPDATED_BY_TEST_SH=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v redis-server >/dev/null || apt_install redis-server
command -v redis-cli >/dev/null || apt_install redis-tools
# The browser test drives Debian's Chromium, headless.
[ -x /usr/bin/chromium ] || apt_install chromium
# promtool (Debian's prometheus package) lints the demo's /metrics.
command -v promtool >/dev/null || apt_install prometheus
# The proxy tests run real nginx (auth_request) and Caddy (forward_auth).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
command -v caddy >/dev/null || apt_install caddy
command -v curl >/dev/null || apt_install curl

# The console's browser test drives Chromium with playwright-core and checks
# pages with axe-core (tests/browser/, pinned by its package-lock.json).
command -v npm >/dev/null || apt_install nodejs npm
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
  log "installing playwright-core and axe-core into tests/browser/node_modules"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
fi

# Python test tools (the Stripe emulator, the Standard Webhooks reference
# library, Paddle's and Twilio's official clients, a JSON Schema validator)
# live in a local venv, .venv/.
command -v python3 >/dev/null || apt_install python3
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; python3 -m venv .venv; }
fi
if [ ! -x .venv/bin/localstripe ] || [ ! -x .venv/bin/schemathesis ] || [ ! -x .venv/bin/openapi-spec-validator ] \
  || ! .venv/bin/python -c 'import aiosmtpd, standardwebhooks, jsonschema, paddle_billing, twilio' 2>/dev/null; then
  log "installing localstripe, schemathesis, openapi-spec-validator, aiosmtpd, standardwebhooks, jsonschema, paddle-python-sdk and twilio into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check localstripe==1.15.10 schemathesis==4.32.5 \
    openapi-spec-validator==0.7.2 aiosmtpd==1.4.6 standardwebhooks==1.0.0 jsonschema==4.23.0 paddle-python-sdk==1.16.1 twilio==9.13.0
fi
export LOCALSTRIPE_BIN="$PWD/.venv/bin/localstripe"

log "cargo test --all-features"
cargo test --all-features "$@"

# Fuzz the admin API through its own OpenAPI document: no input may cause a
# 5xx. The demo runs with localstripe as its Stripe API, so /admin/sync works.
log "schemathesis against the demo's /admin/openapi.json"
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
cargo build --quiet --example quickstart
ls_port=$(free_port)
app_port=$(free_port)
token="schemathesis-$RANDOM$RANDOM"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
.venv/bin/localstripe --port "$ls_port" --from-scratch >/dev/null 2>&1 & pids+=($!)
wait_port "$ls_port" || { echo "localstripe did not start" >&2; exit 1; }
PASTDUE_SERVER__LISTEN="127.0.0.1:$app_port" PASTDUE_ADMIN__TOKEN="$token" \
  PASTDUE_STRIPE__API_KEY=sk_test_schemathesis PASTDUE_STRIPE__API_BASE="http://127.0.0.1:$ls_port" \
  "${CARGO_TARGET_DIR:-target}/debug/examples/quickstart" >/dev/null & pids+=($!)
wait_port "$app_port" || { echo "the demo did not start" >&2; exit 1; }
.venv/bin/schemathesis run "http://127.0.0.1:$app_port/admin/openapi.json" \
  -H "Authorization: Bearer $token" --checks not_a_server_error \
  --max-examples 30 --seed 1 --no-color

# The observability contracts, checked by the ecosystem's own tools.
log "openapi-spec-validator on the demo's /admin/openapi.json"
spec=$(mktemp --suffix=.json)
curl -sf "http://127.0.0.1:$app_port/admin/openapi.json" -o "$spec"
.venv/bin/openapi-spec-validator "$spec"
log "promtool check metrics on the demo's /metrics"
# Touch every gate path first: a pass, a block, no account, a miss.
curl -sf -XPOST "http://127.0.0.1:$app_port/demo/invoice-failed?account=promtool-late&days_ago=30" \
  -H "Authorization: Bearer $token" >/dev/null
for account in promtool-late promtool-new promtool-new; do
  curl -s -o /dev/null -H "X-Account-Id: $account" "http://127.0.0.1:$app_port/api/ping"
done
curl -s -o /dev/null "http://127.0.0.1:$app_port/api/ping"
metrics=$(curl -sf "http://127.0.0.1:$app_port/metrics")
grep -q '^pastdue_decisions_total' <<<"$metrics" || { echo "no pastdue_decisions_total in /metrics" >&2; exit 1; }
promtool check metrics <<<"$metrics"

# Coverage-guided fuzzing (libFuzzer via cargo-fuzz, on stable with no
# sanitizer): a bounded smoke run of every target. SKIP_FUZZ=1 skips it.
if [ -z "${SKIP_FUZZ:-}" ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  fi
  log "fuzz smoke run (${FUZZ_SECONDS:-8}s per target)"
  (
    cd fuzz
    cargo fuzz build -s none -O
    out=$(mktemp)
    for target in signature_header stripe_event config account_id accept; do
      if ! cargo fuzz run "$target" -s none -O -- -max_total_time="${FUZZ_SECONDS:-8}" -rss_limit_mb=2048 >"$out" 2>&1; then
        tail -40 "$out" >&2
        echo "fuzz target $target failed (artifacts in fuzz/artifacts/$target)" >&2
        exit 1
      fi
      printf '%s: %s\n' "$target" "$(grep -E '^Done' "$out" || echo done)"
    done
  )
fi
