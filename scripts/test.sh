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
  if [ -z "${PASTDUE_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export PASTDUE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v redis-server >/dev/null || apt_install redis-server
command -v redis-cli >/dev/null || apt_install redis-tools

# Python test tools (the Stripe emulator) live in a local venv, .venv/.
command -v python3 >/dev/null || apt_install python3
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; python3 -m venv .venv; }
fi
if [ ! -x .venv/bin/localstripe ]; then
  log "installing localstripe into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check localstripe==1.15.10
fi
export PASTDUE_LOCALSTRIPE="$PWD/.venv/bin/localstripe"

log "cargo test --all-features"
cargo test --all-features "$@"
