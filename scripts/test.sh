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

log "cargo test --all-features"
cargo test --all-features "$@"
