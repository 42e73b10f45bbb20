#!/usr/bin/env bash
# The whole Chorus test suite, from a fresh Debian machine with the Rust toolchain:
# installs what the tests need (idempotently), lints, runs the browser tests and the
# Rust tests. The Rust test runner's summary closes the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# One pass over a fresh tree gains nothing from incremental compilation, and its caches
# would double the target directory on a disk that may be small.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log() { printf '\n== %s\n' "$*"; }

# System packages: cmake builds the bundled libopus of the test peers; Chromium and
# Firefox ESR are the browsers the web-client tests drive; redis-server backs the fleet
# tests (each test starts its own on a free loopback port and stops it by pid); iproute2
# gives the partition tests hosts of their own (network namespaces, which need root).
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2) # network namespaces of the partition tests
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
# python3 runs moto's S3 server, the central attachment store of the fleet tests.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

log "moto's S3 server (python3 -m moto.server) for the fleet attachment tests"
moto_ready() { "$1" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; }
if moto_ready python3; then
  export CHORUS_MOTO_PYTHON=python3
else
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/chorus-test-moto"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  moto_ready "$venv/bin/python" || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
  export CHORUS_MOTO_PYTHON="$venv/bin/python"
fi

log "npm ci (playwright-core, puppeteer-core; no browser download)"
(cd web-client && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building the binaries for the browser tests (chorus; the fleet's chorus-signaling and chorus-sfu)"
cargo build --locked -p chorus-signaling --bin chorus --bin chorus-signaling -p chorus-sfu --bin chorus-sfu

status=0
log "browser tests (headless Chromium and Firefox ESR)"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
(cd web-client && CHORUS_BIN="$target_dir/debug/chorus" CHORUS_SIGNALING_BIN="$target_dir/debug/chorus-signaling" \
  CHORUS_SFU_BIN="$target_dir/debug/chorus-sfu" npm test) || status=1

log "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast || status=1
else
  cargo test --workspace --locked --no-fail-fast || status=1
fi
exit $status
