#!/usr/bin/env bash
# The head-to-head (docs/benchmarks/head-to-head.md): starts a real Apache
# Kafka 4.4 broker (scripts/kafka.sh, on its own ports and run dir) and
# `eventline dev`'s PostgreSQL (wal_level=logical) and schema registry,
# fetches Kafka Connect and Debezium (scripts/connect.sh), builds eventline,
# the Watermill forwarder (bench/peers/watermill) and the harness, runs the
# harness with the arguments given, and stops everything.
#
#   bash scripts/bench-peers.sh [headtohead flags...]
#   make bench-peers [PEERS_ARGS='--rounds 3']
#   make bench-peers-smoke        # tiny numbers: does the harness still work?
#
# Environment (all optional):
#   EVENTLINE_PEERS_DIR       run dir (default: a new temporary one, removed
#                             at the end unless EVENTLINE_PEERS_KEEP=1)
#   EVENTLINE_PEERS_JSON      where the JSON goes (default <run dir>/head-to-head.json)
#   EVENTLINE_PEERS_KAFKA_PORT  the broker's client port (29892; controller +1)
#   EVENTLINE_PEERS_CONNECT_PORT the Connect worker's REST port (28083)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$ROOT"

log() { echo "bench-peers: $*" >&2; }
die() { log "$*"; exit 1; }

RUN=${EVENTLINE_PEERS_DIR:-}
if [ -z "$RUN" ]; then
  RUN=$(mktemp -d -t eventline-peers.XXXXXX)
  [ "${EVENTLINE_PEERS_KEEP:-}" = 1 ] || REMOVE_RUN=1
fi
mkdir -p "$RUN/bin"
# PostgreSQL runs as the postgres user when we are root: it must traverse.
chmod 711 "$RUN"
KAFKA_PORT=${EVENTLINE_PEERS_KAFKA_PORT:-29892}
export EVENTLINE_KAFKA_DIR=$RUN/kafka EVENTLINE_KAFKA_PORT=$KAFKA_PORT EVENTLINE_KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))

DEV_PID=
cleanup() {
  local code=$?
  if [ -n "$DEV_PID" ] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill -TERM "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
  fi
  bash "$SCRIPT_DIR/kafka.sh" down || true
  if [ "${REMOVE_RUN:-}" = 1 ]; then
    rm -rf "$RUN"
  else
    log "run dir kept: $RUN"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building eventline, the harness and the Watermill forwarder"
go build -trimpath -o bin/eventline ./cmd/eventline
go build -o "$RUN/bin/headtohead" ./internal/tools/headtohead
(cd bench/peers/watermill && go build -o "$RUN/bin/watermill-forwarder" .)

conn=$(bash "$SCRIPT_DIR/connect.sh" fetch)
while IFS='=' read -r k v; do
  case "$k" in CONNECT_LIBS | CONNECT_PLUGIN_PATH) export "$k=$v" ;; esac
done <<<"$conn"

line=$(bash "$SCRIPT_DIR/kafka.sh" up)
export KAFKA_BROKERS=${line#EVENTLINE_TEST_KAFKA=}

# eventline dev for PostgreSQL (wal_level=logical) and the registry; its own
# embedded broker is not used. DATABASE_URL reaches the harness through the
# environment only.
env -u DATABASE_URL bin/eventline dev --data-dir "$RUN/dev" --env-file "$RUN/dev.env" \
  --kafka-port -1 --registry-port -1 >/dev/null 2>"$RUN/dev.log" &
DEV_PID=$!
for _ in $(seq 1 600); do
  [ -s "$RUN/dev.env" ] && break
  kill -0 "$DEV_PID" 2>/dev/null || { cat "$RUN/dev.log" >&2; die "eventline dev exited during startup"; }
  sleep 0.2
done
[ -s "$RUN/dev.env" ] || die "eventline dev did not start within 2 minutes (see $RUN/dev.log)"
while IFS='=' read -r k v; do
  case "$k" in SCHEMA_REGISTRY_URL | DATABASE_URL) export "$k=$v" ;; esac
done <"$RUN/dev.env"

log "running the head-to-head (run dir $RUN)"
"$RUN/bin/headtohead" --eventline bin/eventline --watermill "$RUN/bin/watermill-forwarder" \
  --broker-pid-file "$RUN/kafka/kafka.pid" --connect-dir "$RUN/connect" \
  --connect-port "${EVENTLINE_PEERS_CONNECT_PORT:-28083}" \
  --json "${EVENTLINE_PEERS_JSON:-$RUN/head-to-head.json}" "$@"
