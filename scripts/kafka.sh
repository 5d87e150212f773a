#!/usr/bin/env bash
# Real Apache Kafka for tests: one KRaft node (broker + controller) on
# 127.0.0.1, run from Maven Central jars with the machine's Java (17+).
#
#   bash scripts/kafka.sh fetch    # download the jars (once per Kafka version)
#   bash scripts/kafka.sh up       # (re)start an empty broker, wait until ready,
#                                  # print EVENTLINE_TEST_KAFKA=127.0.0.1:<port>
#   bash scripts/kafka.sh status   # running? (prints the same line if so)
#   bash scripts/kafka.sh down     # stop it (no error if nothing runs)
#   bash scripts/kafka.sh stop     # stop it, keeping its data (for restart tests)
#   bash scripts/kafka.sh start    # start the node `up` formatted again, with its
#                                  # data; wait until ready, print the same line
#
# Only the EVENTLINE_TEST_KAFKA=... line goes to stdout, so
#   export "$(bash scripts/kafka.sh up)"
# works; progress and errors go to stderr.
#
# Environment (all optional):
#   EVENTLINE_CACHE                  cache root (default ~/.cache/eventline)
#   EVENTLINE_KAFKA_VERSION          org.apache.kafka:kafka_2.13 version (4.4.0)
#   EVENTLINE_KAFKA_DIR              run dir: config, pid, data, logs
#                                    (default $EVENTLINE_CACHE/kafka-run)
#   EVENTLINE_KAFKA_PORT             client listener port (29092; below the
#                                    kernel's ephemeral range, so no outgoing
#                                    connection can hold it)
#   EVENTLINE_KAFKA_CONTROLLER_PORT  controller listener port (29093)
#   EVENTLINE_KAFKA_TIMEOUT          seconds `up` waits for readiness (90)
#   EVENTLINE_KAFKA_LOG_LEVEL        broker log level, to <run dir>/logs/server.log (WARN)
#   EVENTLINE_KAFKA_JAVA_OPTS        extra JVM options
#   EVENTLINE_KAFKA_EXTRA_PROPERTIES file appended to server.properties on up
#                                    (a later key wins: e.g. listeners with a
#                                    SASL_SSL listener beside PLAINTEXT, which
#                                    the readiness probe keeps using)
#   JAVA_HOME                        Java to use (else `java` on PATH)
#
# Jars land in $EVENTLINE_CACHE/kafka-<version>/libs (Maven's local repo,
# ~/.m2 by default, is used as usual). Nothing is written inside the repo.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
POM=$SCRIPT_DIR/kafka/pom.xml
LOG4J_CONF=$SCRIPT_DIR/kafka/log4j2.properties

KAFKA_VERSION=${EVENTLINE_KAFKA_VERSION:-4.4.0}
CACHE=${EVENTLINE_CACHE:-$HOME/.cache/eventline}
DIST=$CACHE/kafka-$KAFKA_VERSION
LIBS=$DIST/libs
MARKER=$DIST/.complete
RUN=${EVENTLINE_KAFKA_DIR:-$CACHE/kafka-run}
PIDFILE=$RUN/kafka.pid
HOST=127.0.0.1
PORT=${EVENTLINE_KAFKA_PORT:-29092}
CONTROLLER_PORT=${EVENTLINE_KAFKA_CONTROLLER_PORT:-29093}
TIMEOUT=${EVENTLINE_KAFKA_TIMEOUT:-90}
LOG_LEVEL=${EVENTLINE_KAFKA_LOG_LEVEL:-WARN}
READY_BIN=$CACHE/bin/kafkaready

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no java found (Kafka 4.x needs Java 17+); install e.g. openjdk-17-jre-headless or set JAVA_HOME"
  fi
}

check_java() {
  local v major
  v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  major=${v%%.*}
  if ! [[ $major =~ ^[0-9]+$ ]] || [ "$major" -lt 17 ]; then
    die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is version '${v:-unknown}'"
  fi
}

# The marker holds the Kafka version and a hash of the pom, so editing the
# pom (e.g. another logging jar) triggers a new fetch.
fetch_stamp() {
  echo "kafka=$KAFKA_VERSION pom=$(sha256sum "$POM" | cut -d' ' -f1)"
}

fetched() {
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$(fetch_stamp)" ] &&
    [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]
}

cmd_fetch() {
  if fetched; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the Kafka jars); install maven"
  mkdir -p "$DIST"
  # One fetch at a time per version (parallel `up`s in CI, say).
  exec 9>"$DIST/.lock"
  flock 9
  if fetched; then
    exec 9>&-
    return 0
  fi
  log "fetching Kafka $KAFKA_VERSION jars into $LIBS"
  rm -rf "$LIBS.tmp" "$MARKER"
  # Maven's output is kept in a file and shown only on failure (Debian's
  # Maven 3.8 prints stray color codes even with -B -q).
  if ! mvn -B -q -f "$POM" package \
      -Dkafka.version="$KAFKA_VERSION" \
      -Dkafka.libs.dir="$LIBS.tmp" \
      -Dkafka.build.dir="$DIST/maven" >"$DIST/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$DIST/mvn.log" >&2
    rm -rf "$LIBS.tmp"
    die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies (see above)"
  fi
  [ -f "$LIBS.tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "mvn ran but $LIBS.tmp has no kafka_2.13-$KAFKA_VERSION.jar"
  rm -rf "$LIBS" "$DIST/maven"
  mv "$LIBS.tmp" "$LIBS"
  fetch_stamp >"$MARKER"
  exec 9>&-
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

# alive PID: the process exists and is not a zombie.
alive() {
  local st
  st=$(ps -p "$1" -o stat= 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

# running_pid: prints the pid of the broker this run dir started, if it runs.
# The pid must still be a kafka.Kafka process (pids get reused).
running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  ps -p "$pid" -o args= 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

# stop_pid PID: SIGTERM, up to 30 s for a clean shutdown, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 0
    sleep 0.2
  done
  log "broker (pid $pid) still running after 30 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "could not stop pid $pid"
}

cmd_down() {
  local pid
  if pid=$(running_pid); then
    log "stopping broker (pid $pid)"
    stop_pid "$pid"
    log "stopped"
  fi
  rm -f "$PIDFILE" "$RUN/bootstrap"
}

port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# new_cluster_id: a random Kafka Uuid in its text form (16 bytes, URL-safe
# base64, no padding), without starting a JVM for `StorageTool random-uuid`.
# Like Kafka's own, it never starts with '-', which command lines would take
# for a flag.
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [ "${id:0:1}" != "-" ] && break
  done
  echo "$id"
}

write_config() {
  cat >"$RUN/server.properties" <<EOF
# Written by scripts/kafka.sh up; rewritten on every up.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/data

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Test-friendly defaults.
group.initial.rebalance.delay.ms=0
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
log.segment.bytes=8388608
num.network.threads=2
num.io.threads=4
background.threads=4
EOF
  if [ -n "${EVENTLINE_KAFKA_EXTRA_PROPERTIES:-}" ]; then
    [ -r "$EVENTLINE_KAFKA_EXTRA_PROPERTIES" ] || die "EVENTLINE_KAFKA_EXTRA_PROPERTIES: cannot read $EVENTLINE_KAFKA_EXTRA_PROPERTIES"
    { echo; echo "# From EVENTLINE_KAFKA_EXTRA_PROPERTIES."; cat "$EVENTLINE_KAFKA_EXTRA_PROPERTIES"; } >>"$RUN/server.properties"
  fi
  chmod 600 "$RUN/server.properties"
}

# fail_up MSG PID: show why, stop the half-started broker, exit 1.
fail_up() {
  local msg=$1 pid=${2:-}
  log "$msg"
  local f
  for f in "$RUN/logs/kafka.out" "$RUN/logs/server.log"; do
    if [ -s "$f" ]; then
      echo "---- last lines of $f ----" >&2
      tail -n 60 "$f" >&2
    fi
  done
  if [ -n "$pid" ] && alive "$pid"; then
    stop_pid "$pid" || true
  fi
  rm -f "$PIDFILE" "$RUN/bootstrap"
  exit 1
}

cmd_up() {
  cmd_fetch
  JAVA=$(java_bin)
  check_java

  local old
  if old=$(running_pid); then
    log "a broker from an earlier up is running (pid $old); stopping it first"
  fi
  cmd_down

  check_ports
  build_probe

  # Every up starts from empty storage and a fresh log.
  mkdir -p "$RUN"
  rm -rf "$RUN/data" "$RUN/logs"
  mkdir -p "$RUN/data" "$RUN/logs"
  write_config

  local cluster_id
  cluster_id=$(new_cluster_id)
  log "formatting storage (cluster id $cluster_id)"
  if ! "$JAVA" "${JVM_COMMON[@]}" -cp "$LIBS/*" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$RUN/server.properties" --standalone \
      >"$RUN/logs/format.out" 2>&1 </dev/null; then
    cat "$RUN/logs/format.out" >&2
    fail_up "formatting storage failed"
  fi

  launch
}

check_ports() {
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_in_use "$p"; then
      die "$HOST:$p is already in use by another process; stop it or set EVENTLINE_KAFKA_PORT / EVENTLINE_KAFKA_CONTROLLER_PORT"
    fi
  done
}

# Build the readiness probe before starting anything (cached after once).
build_probe() {
  command -v go >/dev/null 2>&1 || die "go not found (needed for the readiness probe)"
  mkdir -p "$(dirname "$READY_BIN")"
  (cd "$REPO_ROOT" && go build -o "$READY_BIN" ./internal/tools/kafkaready) ||
    die "could not build internal/tools/kafkaready"
}

JVM_COMMON=(
  -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$LOG4J_CONF"
  -Dkafka.logs.dir="$RUN/logs"
  -Deventline.kafka.loglevel="$LOG_LEVEL"
)

# launch: start the broker on the storage and config in $RUN, wait until it
# is ready, print the EVENTLINE_TEST_KAFKA line (for up and start).
launch() {
  log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT), run dir $RUN"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # Own session (Ctrl-C of the caller does not reach it), no inherited fds
  # (a caller's $(...) does not wait for it).
  # shellcheck disable=SC2086 # EVENTLINE_KAFKA_JAVA_OPTS is a list of options
  "${launcher[@]}" nohup "$JAVA" -Xms256m -Xmx768m \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent \
    "${JVM_COMMON[@]}" ${EVENTLINE_KAFKA_JAVA_OPTS:-} \
    -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties" \
    >>"$RUN/logs/kafka.out" 2>&1 </dev/null &
  local pid=$! ready=
  echo "$pid" >"$PIDFILE"
  trap '[ -n "$ready" ] && kill "$ready" 2>/dev/null; fail_up "interrupted" "$pid"' INT TERM

  # Wait for the probe, but give up at once if the JVM dies.
  "$READY_BIN" -brokers "$HOST:$PORT" -timeout "${TIMEOUT}s" &
  ready=$!
  while alive "$ready"; do
    if ! alive "$pid"; then
      kill "$ready" 2>/dev/null || true
      wait "$ready" 2>/dev/null || true
      fail_up "the broker exited during startup" "$pid"
    fi
    sleep 0.2
  done
  if ! wait "$ready"; then
    fail_up "the broker did not become ready within ${TIMEOUT} s" "$pid"
  fi
  trap - INT TERM

  echo "$HOST:$PORT" >"$RUN/bootstrap"
  log "ready (pid $pid, log $RUN/logs/server.log)"
  echo "EVENTLINE_TEST_KAFKA=$HOST:$PORT"
}

# cmd_stop: like down (a clean shutdown), said for what it is meant for:
# the data, config and logs stay, and start resumes the node.
cmd_stop() {
  local pid
  if pid=$(running_pid); then
    log "stopping broker (pid $pid), keeping its data in $RUN/data"
    stop_pid "$pid"
    log "stopped"
  fi
  rm -f "$PIDFILE" "$RUN/bootstrap"
}

# cmd_start: start the node that up formatted, on its data and with the
# server.properties up wrote (its ports win over the environment's).
cmd_start() {
  [ -f "$RUN/server.properties" ] && [ -f "$RUN/data/meta.properties" ] ||
    die "no formatted node in $RUN; run up first"
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    echo "EVENTLINE_TEST_KAFKA=$(cat "$RUN/bootstrap" 2>/dev/null || echo "$HOST:$PORT")"
    return 0
  fi
  local p
  p=$(sed -n 's#^advertised\.listeners=PLAINTEXT://.*:\([0-9][0-9]*\)$#\1#p' "$RUN/server.properties")
  [ -n "$p" ] && PORT=$p
  p=$(sed -n 's#^controller\.quorum\.bootstrap\.servers=.*:\([0-9][0-9]*\)$#\1#p' "$RUN/server.properties")
  [ -n "$p" ] && CONTROLLER_PORT=$p
  fetched || die "the Kafka $KAFKA_VERSION jars are not fetched; run up first"
  JAVA=$(java_bin)
  check_java
  check_ports
  build_probe
  mkdir -p "$RUN/logs"
  launch
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    log "running (pid $pid, run dir $RUN)"
    echo "EVENTLINE_TEST_KAFKA=$(cat "$RUN/bootstrap" 2>/dev/null || echo "$HOST:$PORT")"
    return 0
  fi
  log "not running"
  return 1
}

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up) cmd_up ;;
  down) cmd_down ;;
  stop) cmd_stop ;;
  start) cmd_start ;;
  status) cmd_status ;;
  *) usage ;;
esac
