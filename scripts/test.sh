#!/usr/bin/env bash
# The project's single test command (README: "scripts/test.sh"); .ci/run calls it.
# Installs what the tests need, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# tests/http/browser.rs loads the status page in headless Chromium (or $SPIKEWATCH_CHROMIUM).
if [ -z "${SPIKEWATCH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
  && ! command -v chromium-browser >/dev/null 2>&1; then
  need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need_apt[*]}"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  else
    log "missing ${need_apt[*]}: install them (as root: apt-get install ${need_apt[*]}); the tests that need them will fail"
  fi
fi
# tests/deployment/monitoring.rs checks deploy/alerts.yml, its alert unit tests, the
# dashboard's queries and /metrics with promtool (Debian's prometheus package ships it). Best
# effort: without it that one test says it skipped, and the Rust-side parsers still check the
# same files.
if [ -z "${SPIKEWATCH_PROMTOOL:-}" ] && ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing promtool (Debian package prometheus)"
    install_promtool() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
    }
    install_promtool || { apt-get update -q && install_promtool; } \
      || log "could not install prometheus: the promtool test will say it skipped"
  else
    log "no promtool: the promtool test will say it skipped"
  fi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
log "cargo doc -D warnings (no broken or private intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
log "no import loops between the top-level modules of src/"
python3 scripts/module-cycles.py >/tmp/spikewatch-module-cycles.txt \
  || { cat /tmp/spikewatch-module-cycles.txt; exit 1; }
# A real Kafka-protocol broker (tansu, in memory) for the integration tests; stopped on exit.
# SPIKEWATCH_TEST_BROKERS set by the caller: use that broker instead.
if [ -z "${SPIKEWATCH_TEST_BROKERS:-}" ]; then
  python3 -m pip --version >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q python3-pip; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  trap 'scripts/kafka-broker.sh stop "$port"' EXIT
  SPIKEWATCH_TEST_BROKERS=$(scripts/kafka-broker.sh start "$port")
  export SPIKEWATCH_TEST_BROKERS
fi
log "broker: $SPIKEWATCH_TEST_BROKERS"

log "cargo test"
cargo test --all-targets
cargo test --doc
