#!/usr/bin/env bash
# Kafka Connect and Debezium's PostgreSQL connector for the head-to-head
# benchmark (docs/benchmarks/head-to-head.md), from Maven Central jars, like
# scripts/kafka.sh fetches the broker's.
#
#   bash scripts/connect.sh fetch   # download the jars (once per version),
#                                   # print CONNECT_LIBS=<dir> and
#                                   # CONNECT_PLUGIN_PATH=<dir>
#
# Only those two lines go to stdout; progress and errors go to stderr. The
# benchmark starts the worker itself (org.apache.kafka.connect.cli.ConnectStandalone
# with CONNECT_LIBS on the classpath and plugin.path=CONNECT_PLUGIN_PATH), so it
# knows the JVM's pid for CPU and memory.
#
# Environment (all optional):
#   EVENTLINE_CACHE             cache root (default ~/.cache/eventline)
#   EVENTLINE_CONNECT_VERSION   org.apache.kafka:connect-runtime version (4.3.0:
#                               the release Debezium 3.6.1 is built against;
#                               with 4.4.0 its task fails on a moved Kafka class)
#   EVENTLINE_DEBEZIUM_VERSION  io.debezium:debezium-connector-postgres version
#                               (3.6.1.Final)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORKER_POM=$SCRIPT_DIR/connect/worker-pom.xml
PLUGIN_POM=$SCRIPT_DIR/connect/debezium-pom.xml
CONNECT_VERSION=${EVENTLINE_CONNECT_VERSION:-4.3.0}
DEBEZIUM_VERSION=${EVENTLINE_DEBEZIUM_VERSION:-3.6.1.Final}
CACHE=${EVENTLINE_CACHE:-$HOME/.cache/eventline}

log() { echo "connect.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# fetch_into POM DIR WORK STAMP JAR PROPS...: run POM's copy-dependencies
# into DIR unless DIR/.complete holds STAMP and DIR has JAR; one fetch at a
# time. Maven's scratch, log and lock go under WORK, outside plugin.path.
fetch_into() {
  local pom=$1 dir=$2 work=$3 stamp=$4 jar=$5
  shift 5
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ] && [ -f "$dir/$jar" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the jars); run make ensure-java"
  mkdir -p "$(dirname "$dir")" "$work"
  exec 9>"$work/lock"
  flock 9
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ] && [ -f "$dir/$jar" ]; then
    exec 9>&-
    return 0
  fi
  log "fetching $jar and its dependencies into $dir"
  rm -rf "$work/tmp" "$work/maven"
  # Maven's output is shown only on failure (Debian's Maven prints stray
  # color codes even with -B -q).
  if ! mvn -B -q -f "$pom" package "$@" >"$work/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$work/mvn.log" >&2
    rm -rf "$work/tmp" "$work/maven"
    die "mvn could not fetch $jar and its dependencies (see above)"
  fi
  [ -f "$work/tmp/$jar" ] || die "mvn ran but $work/tmp has no $jar"
  rm -rf "$dir" "$work/maven"
  mv "$work/tmp" "$dir"
  echo "$stamp" >"$dir/.complete"
  exec 9>&-
  log "fetched $(find "$dir" -name '*.jar' | wc -l) jars"
}

cmd_fetch() {
  local libs=$CACHE/connect-$CONNECT_VERSION/libs
  # plugin.path names a directory of plugins, each in a directory of its own.
  local plugins=$CACHE/debezium-$DEBEZIUM_VERSION/plugins
  local plugin=$plugins/debezium-connector-postgres
  fetch_into "$WORKER_POM" "$libs" "$CACHE/connect-$CONNECT_VERSION/fetch" \
    "connect=$CONNECT_VERSION pom=$(sha256sum "$WORKER_POM" | cut -d' ' -f1)" \
    "connect-runtime-$CONNECT_VERSION.jar" \
    -Dconnect.version="$CONNECT_VERSION" -Dconnect.libs.dir="$CACHE/connect-$CONNECT_VERSION/fetch/tmp" \
    -Dconnect.build.dir="$CACHE/connect-$CONNECT_VERSION/fetch/maven"
  fetch_into "$PLUGIN_POM" "$plugin" "$CACHE/debezium-$DEBEZIUM_VERSION/fetch" \
    "debezium=$DEBEZIUM_VERSION pom=$(sha256sum "$PLUGIN_POM" | cut -d' ' -f1)" \
    "debezium-connector-postgres-$DEBEZIUM_VERSION.jar" \
    -Ddebezium.version="$DEBEZIUM_VERSION" -Ddebezium.plugin.dir="$CACHE/debezium-$DEBEZIUM_VERSION/fetch/tmp" \
    -Ddebezium.build.dir="$CACHE/debezium-$DEBEZIUM_VERSION/fetch/maven"
  echo "CONNECT_LIBS=$libs"
  echo "CONNECT_PLUGIN_PATH=$plugins"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  *) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
