#!/usr/bin/env bash
# Real Apache Kafka for tests: one KRaft node (broker + controller) on
# 127.0.0.1, or a cluster of them (EVENTLINE_KAFKA_NODES=3), run from Maven
# Central jars with the machine's Java (17+).
#
#   bash scripts/kafka.sh fetch    # download the jars (once per Kafka version)
#   bash scripts/kafka.sh up       # (re)start an empty broker, wait until ready,
#                                  # print EVENTLINE_TEST_KAFKA=127.0.0.1:<port>
#   bash scripts/kafka.sh status   # running? (prints the same line if so)
#   bash scripts/kafka.sh down     # stop it (no error if nothing runs)
#   bash scripts/kafka.sh stop     # stop it, keeping its data (for restart tests)
#   bash scripts/kafka.sh start    # start the node `up` formatted again, with its
#                                  # data; wait until ready, print the same line
#   bash scripts/kafka.sh kill N       # SIGKILL node N of a cluster (1..nodes)
#   bash scripts/kafka.sh stop-node N  # stop node N cleanly, keeping its data
#   bash scripts/kafka.sh start-node N # start node N on its data, wait until
#                                      # it serves and every node is registered
#
# Only the EVENTLINE_TEST_KAFKA=... line goes to stdout, so
#   export "$(bash scripts/kafka.sh up)"
# works; progress and errors go to stderr.
#
# A cluster (EVENTLINE_KAFKA_NODES=N, N>1, read by up; the other commands
# find the nodes in the run dir) is N combined broker+controller nodes with
# ids 1..N and a static controller quorum of all of them, each in
# <run dir>/node-<i> (config, pid, data, logs). Topics get 3 replicas
# (at most N) and min.insync.replicas=2 by default, the internal topics too,
# so one node may die without losing an acknowledged (acks=all) write; a
# killed broker is fenced 9 s after its last heartbeat, which moves its
# partitions' leadership. stop, start, down and status act on every node.
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
#   EVENTLINE_KAFKA_NODES            nodes `up` starts (1)
#   EVENTLINE_KAFKA_PORTS            a cluster's client ports, one per node
#                                    (default EVENTLINE_KAFKA_PORT + 2*(i-1))
#   EVENTLINE_KAFKA_CONTROLLER_PORTS its controller ports (default
#                                    EVENTLINE_KAFKA_CONTROLLER_PORT + 2*(i-1))
#   EVENTLINE_KAFKA_TIMEOUT          seconds `up` waits for readiness (90; 180
#                                    for a cluster, three JVMs starting at once)
#   EVENTLINE_KAFKA_LOG_LEVEL        broker log level, to <run dir>/logs/server.log (WARN)
#   EVENTLINE_KAFKA_JAVA_OPTS        extra JVM options (a single node has
#                                    -Xmx768m, a cluster's nodes -Xmx512m each)
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
HOST=127.0.0.1
PORT=${EVENTLINE_KAFKA_PORT:-29092}
CONTROLLER_PORT=${EVENTLINE_KAFKA_CONTROLLER_PORT:-29093}
NODES=${EVENTLINE_KAFKA_NODES:-1}
# The node the functions act on: a single node lives in the run dir itself,
# node i of a cluster in node-<i> (use_node).
NODE_DIR=$RUN
PIDFILE=$RUN/kafka.pid
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

# cluster_size: the nodes of the run dir's cluster (the nodes file up
# writes); fails for a single node.
cluster_size() {
  local n
  [ -f "$RUN/nodes" ] || return 1
  n=$(cat "$RUN/nodes")
  [[ $n =~ ^[0-9]+$ ]] || die "$RUN/nodes holds '$n', not a node count"
  echo "$n"
}

# cluster_timeout: a cluster's nodes start together on a machine of maybe
# two cores: they get longer to become ready.
cluster_timeout() { TIMEOUT=${EVENTLINE_KAFKA_TIMEOUT:-180}; }

# use_node I: point NODE_DIR and PIDFILE at node I of a cluster, and PORT
# and CONTROLLER_PORT at its ports (from its config once up wrote it, else
# from the environment).
use_node() {
  local i=$1 p
  NODE_DIR=$RUN/node-$i
  PIDFILE=$NODE_DIR/kafka.pid
  if [ -f "$NODE_DIR/server.properties" ]; then
    p=$(sed -n 's#^advertised\.listeners=PLAINTEXT://.*:\([0-9][0-9]*\)$#\1#p' "$NODE_DIR/server.properties")
    [ -n "$p" ] && PORT=$p
    p=$(sed -n 's#^listeners=.*CONTROLLER://.*:\([0-9][0-9]*\)$#\1#p' "$NODE_DIR/server.properties")
    [ -n "$p" ] && CONTROLLER_PORT=$p
  else
    PORT=$(nth_port "${EVENTLINE_KAFKA_PORTS:-}" "${EVENTLINE_KAFKA_PORT:-29092}" "$i" EVENTLINE_KAFKA_PORTS)
    CONTROLLER_PORT=$(nth_port "${EVENTLINE_KAFKA_CONTROLLER_PORTS:-}" "${EVENTLINE_KAFKA_CONTROLLER_PORT:-29093}" "$i" EVENTLINE_KAFKA_CONTROLLER_PORTS)
  fi
}

# nth_port LIST BASE I NAME: the I-th port of the comma-separated LIST, or
# BASE + 2*(I-1) without a list (client and controller ports interleave).
nth_port() {
  local list=$1 base=$2 i=$3 name=$4 ports
  if [ -n "$list" ]; then
    IFS=, read -r -a ports <<<"$list"
    [ "${#ports[@]}" -ge "$i" ] && [[ ${ports[$((i - 1))]} =~ ^[0-9]+$ ]] ||
      die "$name=$list names no port for node $i"
    echo "${ports[$((i - 1))]}"
  else
    echo $((base + 2 * (i - 1)))
  fi
}

# node_arg N: check a node number given on the command line.
node_arg() {
  local n
  n=$(cluster_size) || die "no cluster in $RUN (up with EVENTLINE_KAFKA_NODES=3 first)"
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$n" ] ||
    die "node '${1:-}': want a number from 1 to $n"
}

# running_pid: prints the pid of the broker PIDFILE names, if it runs.
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

# stop_pids PID...: SIGTERM to all at once, up to 30 s for a clean
# shutdown, then SIGKILL. All at once: the last nodes of a cluster stopped
# one after the other would wait for a controller quorum already gone.
stop_pids() {
  local pid i left=()
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 150; i++)); do
    left=()
    for pid in "$@"; do alive "$pid" && left+=("$pid"); done
    [ "${#left[@]}" -eq 0 ] && return 0
    sleep 0.2
  done
  log "broker(s) (pid ${left[*]}) still running after 30 s; sending SIGKILL"
  kill_pids "${left[@]}"
}

# kill_pids PID...: SIGKILL, and wait until they are gone.
kill_pids() {
  local pid i left=()
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    left=()
    for pid in "$@"; do alive "$pid" && left+=("$pid"); done
    [ "${#left[@]}" -eq 0 ] && return 0
    sleep 0.1
  done
  die "could not stop pid ${left[*]}"
}

# running_pids: the pids of every node of the run dir that runs (a single
# node, or the nodes of a cluster).
running_pids() {
  local d pid
  for d in "$RUN" "$RUN"/node-*; do
    [ -d "$d" ] || continue
    PIDFILE=$d/kafka.pid
    if pid=$(running_pid); then
      echo "$pid"
    fi
  done
}

# stop_all VERB: stop every node of the run dir; VERB says so in the log.
stop_all() {
  local verb=$1 pids
  mapfile -t pids < <(running_pids)
  if [ "${#pids[@]}" -gt 0 ]; then
    log "$verb (pid ${pids[*]})"
    stop_pids "${pids[@]}"
    log "stopped"
  fi
  rm -f "$RUN/kafka.pid" "$RUN"/node-*/kafka.pid "$RUN/bootstrap"
}

cmd_down() { stop_all "stopping the broker(s)"; }

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

# write_config NODE_ID QUORUM REPLICAS MIN_ISR: NODE_DIR/server.properties.
# QUORUM is the line naming the controllers: controller.quorum.bootstrap.servers
# for a single node (formatted --standalone), controller.quorum.voters for
# a cluster (a static quorum, formatted without it).
write_config() {
  local id=$1 quorum=$2 rf=$3 isr=$4
  cat >"$NODE_DIR/server.properties" <<PROPS
# Written by scripts/kafka.sh up; rewritten on every up.
process.roles=broker,controller
node.id=$id
$quorum
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$NODE_DIR/data

# Internal topics: as many replicas as topics created without a factor get.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr

# Test-friendly defaults.
group.initial.rebalance.delay.ms=0
num.partitions=1
default.replication.factor=$rf
auto.create.topics.enable=true
delete.topic.enable=true
log.segment.bytes=8388608
num.network.threads=2
num.io.threads=4
background.threads=4
PROPS
  if [ "$NODES" -gt 1 ]; then
    cat >>"$NODE_DIR/server.properties" <<PROPS

# A cluster: an acks=all write is on min.insync.replicas replicas before it
# is acknowledged. A SIGKILLed node is fenced (its partitions get new
# leaders, it leaves their ISRs) broker.session.timeout.ms (9 s) after its
# last heartbeat. Shorter (4 s) fenced live brokers on a loaded 2-core
# machine, the controller too busy to count their heartbeats.
min.insync.replicas=$isr
broker.heartbeat.interval.ms=1000
PROPS
  fi
  if [ -n "${EVENTLINE_KAFKA_EXTRA_PROPERTIES:-}" ]; then
    [ -r "$EVENTLINE_KAFKA_EXTRA_PROPERTIES" ] || die "EVENTLINE_KAFKA_EXTRA_PROPERTIES: cannot read $EVENTLINE_KAFKA_EXTRA_PROPERTIES"
    { echo; echo "# From EVENTLINE_KAFKA_EXTRA_PROPERTIES."; cat "$EVENTLINE_KAFKA_EXTRA_PROPERTIES"; } >>"$NODE_DIR/server.properties"
  fi
  chmod 600 "$NODE_DIR/server.properties"
}

# fail_up MSG PID...: show why, stop the half-started broker(s), exit 1.
fail_up() {
  local msg=$1 f d pid left=()
  shift
  log "$msg"
  for d in "$RUN" "$RUN"/node-*; do
    for f in "$d/logs/kafka.out" "$d/logs/server.log"; do
      if [ -s "$f" ]; then
        echo "---- last lines of $f ----" >&2
        tail -n 60 "$f" >&2
      fi
    done
  done
  for pid in "$@"; do alive "$pid" && left+=("$pid"); done
  if [ "${#left[@]}" -gt 0 ]; then
    stop_pids "${left[@]}" || true
  fi
  rm -f "$PIDFILE" "$RUN/bootstrap"
  exit 1
}

# format CLUSTER_ID [OPTION...]: format NODE_DIR's storage.
format() {
  local cluster_id=$1
  shift
  if ! "$JAVA" "${JVM_COMMON[@]}" -cp "$LIBS/*" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$NODE_DIR/server.properties" "$@" \
      >"$NODE_DIR/logs/format.out" 2>&1 </dev/null; then
    cat "$NODE_DIR/logs/format.out" >&2
    fail_up "formatting storage in $NODE_DIR failed"
  fi
}

cmd_up() {
  [[ $NODES =~ ^[1-9]$ ]] || die "EVENTLINE_KAFKA_NODES=$NODES: want 1 to 9"
  cmd_fetch
  JAVA=$(java_bin)
  check_java

  if [ -n "$(running_pids)" ]; then
    log "a broker from an earlier up is running; stopping it first"
  fi
  cmd_down

  # Every up starts from empty storage and a fresh log.
  mkdir -p "$RUN"
  rm -rf "$RUN/data" "$RUN/logs" "$RUN"/node-* "$RUN/nodes"
  if [ "$NODES" -gt 1 ]; then
    up_cluster
    return
  fi
  NODE_DIR=$RUN
  PIDFILE=$RUN/kafka.pid
  check_ports "$PORT" "$CONTROLLER_PORT"
  build_probe
  mkdir -p "$RUN/data" "$RUN/logs"
  write_config 1 "controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT" 1 1

  local cluster_id
  cluster_id=$(new_cluster_id)
  log "formatting storage (cluster id $cluster_id)"
  jvm_common
  format "$cluster_id" --standalone

  launch
}

# up_cluster: format NODES nodes with one cluster id and a static quorum of
# all of them, start them together (none is ready before a majority of the
# quorum runs), and wait until every one is registered.
up_cluster() {
  local i rf isr voters="" ports=() cluster_id pids=()
  cluster_timeout
  rf=$((NODES < 3 ? NODES : 3))
  isr=$((rf < 3 ? 1 : 2))
  for ((i = 1; i <= NODES; i++)); do
    use_node "$i"
    check_ports "$PORT" "$CONTROLLER_PORT"
    ports+=("$PORT")
    voters+="${voters:+,}$i@$HOST:$CONTROLLER_PORT"
  done
  build_probe
  cluster_id=$(new_cluster_id)
  log "formatting $NODES nodes (cluster id $cluster_id, controller quorum $voters)"
  for ((i = 1; i <= NODES; i++)); do
    use_node "$i"
    mkdir -p "$NODE_DIR/data" "$NODE_DIR/logs"
    write_config "$i" "controller.quorum.voters=$voters" "$rf" "$isr"
    jvm_common
    format "$cluster_id"
  done
  echo "$NODES" >"$RUN/nodes"
  for ((i = 1; i <= NODES; i++)); do
    use_node "$i"
    jvm_common
    spawn
    pids+=("$SPAWNED")
  done
  await_ready "$NODES" "$(join_addrs "${ports[@]}")" "${pids[@]}"
  finish_cluster
}

# join_addrs PORT...: host:port,host:port,...
join_addrs() {
  local p out=""
  for p in "$@"; do out+="${out:+,}$HOST:$p"; done
  echo "$out"
}

# finish_cluster: record and print the cluster's bootstrap line.
finish_cluster() {
  local i n ports=()
  n=$(cluster_size)
  for ((i = 1; i <= n; i++)); do
    use_node "$i"
    ports+=("$PORT")
  done
  join_addrs "${ports[@]}" >"$RUN/bootstrap"
  log "ready: $n nodes, logs in $RUN/node-*/logs/server.log"
  echo "EVENTLINE_TEST_KAFKA=$(cat "$RUN/bootstrap")"
}

check_ports() {
  local p
  for p in "$@"; do
    if port_in_use "$p"; then
      die "$HOST:$p is already in use by another process; stop it or set EVENTLINE_KAFKA_PORT / EVENTLINE_KAFKA_CONTROLLER_PORT (EVENTLINE_KAFKA_PORTS / EVENTLINE_KAFKA_CONTROLLER_PORTS for a cluster)"
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

# jvm_common: the JVM options of NODE_DIR's node and of the storage tool.
jvm_common() {
  JVM_COMMON=(
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$LOG4J_CONF"
    -Dkafka.logs.dir="$NODE_DIR/logs"
    -Deventline.kafka.loglevel="$LOG_LEVEL"
  )
}

# spawn: start NODE_DIR's broker in the background; its pid goes to PIDFILE
# and SPAWNED.
spawn() {
  local heap=(-Xms256m -Xmx768m)
  # A cluster's three JVMs share the machine with the tests: each gets less.
  [ "$NODE_DIR" != "$RUN" ] && heap=(-Xms128m -Xmx512m)
  log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT), run dir $NODE_DIR"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  # Own session (Ctrl-C of the caller does not reach it), no inherited fds
  # (a caller's $(...) does not wait for it).
  # shellcheck disable=SC2086 # EVENTLINE_KAFKA_JAVA_OPTS is a list of options
  "${launcher[@]}" nohup "$JAVA" "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent \
    "${JVM_COMMON[@]}" ${EVENTLINE_KAFKA_JAVA_OPTS:-} \
    -cp "$LIBS/*" kafka.Kafka "$NODE_DIR/server.properties" \
    >>"$NODE_DIR/logs/kafka.out" 2>&1 </dev/null &
  SPAWNED=$!
  echo "$SPAWNED" >"$PIDFILE"
}

# await_ready MIN_BROKERS ADDRS PID...: wait for the probe on ADDRS, but give
# up at once if one of the JVMs dies.
await_ready() {
  local min=$1 addrs=$2 ready= pid
  shift 2
  local pids=("$@")
  trap '[ -n "$ready" ] && kill "$ready" 2>/dev/null; fail_up "interrupted" "${pids[@]}"' INT TERM
  "$READY_BIN" -brokers "$addrs" -timeout "${TIMEOUT}s" -min-brokers "$min" &
  ready=$!
  while alive "$ready"; do
    for pid in "${pids[@]}"; do
      if ! alive "$pid"; then
        kill "$ready" 2>/dev/null || true
        wait "$ready" 2>/dev/null || true
        fail_up "the broker (pid $pid) exited during startup" "${pids[@]}"
      fi
    done
    sleep 0.2
  done
  if ! wait "$ready"; then
    fail_up "$addrs did not become ready within ${TIMEOUT} s" "${pids[@]}"
  fi
  trap - INT TERM
}

# launch: start the single node on the storage and config in $RUN, wait
# until it is ready, print the EVENTLINE_TEST_KAFKA line (for up and start).
launch() {
  jvm_common
  spawn
  await_ready 1 "$HOST:$PORT" "$SPAWNED"
  echo "$HOST:$PORT" >"$RUN/bootstrap"
  log "ready (pid $SPAWNED, log $RUN/logs/server.log)"
  echo "EVENTLINE_TEST_KAFKA=$HOST:$PORT"
}

# cmd_stop: like down (a clean shutdown), said for what it is meant for:
# the data, config and logs stay, and start resumes the node(s).
cmd_stop() { stop_all "stopping the broker(s), keeping their data in $RUN"; }

# cmd_start: start the node(s) that up formatted, on their data and with the
# server.properties up wrote (its ports win over the environment's).
cmd_start() {
  local n
  if n=$(cluster_size); then
    start_cluster "$n"
    return
  fi
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
  check_ports "$PORT" "$CONTROLLER_PORT"
  build_probe
  mkdir -p "$RUN/logs"
  launch
}

# start_cluster N: start every node of the cluster that is not running.
start_cluster() {
  local n=$1 i pid pids=() ports=()
  cluster_timeout
  NODES=$n
  fetched || die "the Kafka $KAFKA_VERSION jars are not fetched; run up first"
  JAVA=$(java_bin)
  check_java
  build_probe
  for ((i = 1; i <= n; i++)); do
    use_node "$i"
    [ -f "$NODE_DIR/data/meta.properties" ] || die "no formatted node in $NODE_DIR; run up first"
    ports+=("$PORT")
    if pid=$(running_pid); then
      pids+=("$pid")
      continue
    fi
    check_ports "$PORT" "$CONTROLLER_PORT"
    mkdir -p "$NODE_DIR/logs"
    jvm_common
    spawn
    pids+=("$SPAWNED")
  done
  await_ready "$n" "$(join_addrs "${ports[@]}")" "${pids[@]}"
  finish_cluster
}

# cmd_kill N: SIGKILL node N (a crash: no controlled shutdown, nothing
# flushed), and wait until it is gone.
cmd_kill() {
  node_arg "${1:-}"
  use_node "$1"
  local pid
  pid=$(running_pid) || die "node $1 is not running"
  kill_pids "$pid"
  rm -f "$PIDFILE"
  log "killed node $1 (pid $pid, $HOST:$PORT)"
}

# cmd_stop_node N: stop node N cleanly (controlled shutdown), keeping its data.
cmd_stop_node() {
  node_arg "${1:-}"
  use_node "$1"
  local pid
  if pid=$(running_pid); then
    log "stopping node $1 (pid $pid)"
    stop_pids "$pid"
  fi
  rm -f "$PIDFILE"
}

# cmd_start_node N: start node N on its data; ready once it serves (it has
# caught up with the metadata log) and lists every node as registered.
cmd_start_node() {
  node_arg "${1:-}"
  local n pid
  cluster_timeout
  n=$(cluster_size)
  NODES=$n
  use_node "$1"
  if pid=$(running_pid); then
    log "node $1 already running (pid $pid)"
    return 0
  fi
  fetched || die "the Kafka $KAFKA_VERSION jars are not fetched; run up first"
  JAVA=$(java_bin)
  check_java
  check_ports "$PORT" "$CONTROLLER_PORT"
  build_probe
  mkdir -p "$NODE_DIR/logs"
  jvm_common
  spawn
  await_ready "$n" "$HOST:$PORT" "$SPAWNED"
  log "node $1 ready (pid $SPAWNED)"
}

cmd_status() {
  local pid n i up=0
  if n=$(cluster_size); then
    for ((i = 1; i <= n; i++)); do
      use_node "$i"
      if pid=$(running_pid); then
        log "node $i running (pid $pid, $HOST:$PORT)"
        up=$((up + 1))
      else
        log "node $i not running"
      fi
    done
    # The line while any node serves; success only when all do.
    [ "$up" -gt 0 ] && echo "EVENTLINE_TEST_KAFKA=$(cat "$RUN/bootstrap" 2>/dev/null)"
    [ "$up" -eq "$n" ]
    return
  fi
  if pid=$(running_pid); then
    log "running (pid $pid, run dir $RUN)"
    echo "EVENTLINE_TEST_KAFKA=$(cat "$RUN/bootstrap" 2>/dev/null || echo "$HOST:$PORT")"
    return 0
  fi
  log "not running"
  return 1
}

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up) cmd_up ;;
  down) cmd_down ;;
  stop) cmd_stop ;;
  start) cmd_start ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  stop-node) cmd_stop_node "${2:-}" ;;
  start-node) cmd_start_node "${2:-}" ;;
  *) usage ;;
esac
