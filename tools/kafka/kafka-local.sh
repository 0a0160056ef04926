#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on 127.0.0.1, run
# from jars resolved from Maven Central: no Docker, no Kafka .tgz, no Kafka CLI scripts.
#
#   kafka-local.sh start                   resolve jars if needed, format storage if new, start in
#                                          the background; returns once a Metadata request is answered
#   kafka-local.sh stop                    SIGTERM (clean shutdown), SIGKILL after $KAFKA_STOP_TIMEOUT s
#   kafka-local.sh status                  exit 0 if this instance runs and answers Metadata requests
#   kafka-local.sh reset                   stop and delete the data (the next start formats a new cluster)
#   kafka-local.sh create-topics NAME:PARTITIONS ...   create topics (existing ones are fine), wait for leaders
#   kafka-local.sh fetch                   (re)resolve the jars only
#
# Environment (all optional):
#   KAFKA_LOCAL_HOME        state folder: lib/ data/ logs/ server.properties kafka.pid
#                           default: <repo>/.cache/kafka
#   KAFKA_VERSION           Kafka release; 4.x uses Log4j 2, 3.9.x reload4j    default: 4.1.2
#   KAFKA_PORT              client (PLAINTEXT) port on 127.0.0.1                default: 9092
#   KAFKA_CONTROLLER_PORT   KRaft controller port on 127.0.0.1                  default: 9093
#   KAFKA_EXTRA_PROPERTIES  a properties file appended to the generated config; its keys win.
#                           @KAFKA_PORT@, @KAFKA_CONTROLLER_PORT@, @KAFKA_DATA_DIR@ and
#                           @KAFKA_LOCAL_HOME@ are replaced in it too. Keep a PLAINTEXT listener
#                           on KAFKA_PORT: readiness and create-topics use it.
#   KAFKA_FORMAT_ARGS       extra words for `kafka-storage format` on a new data folder,
#                           e.g. --add-scram SCRAM-SHA-256=[name=alice,password=alice-secret]
#   KAFKA_HEAP_OPTS         JVM heap                                            default: -Xms256m -Xmx1g
#   KAFKA_READY_TIMEOUT     seconds to wait for readiness                       default: 120
#   KAFKA_STOP_TIMEOUT      seconds to wait for a clean shutdown                default: 60
#   PYTHON                  a Python with aiokafka                              default: <repo>/.venv/bin/python
#   JAVA, MVN               the java and mvn commands                           default: java, mvn
#   MAVEN_OPTS              passed to Maven, e.g. -Dmaven.repo.local=DIR
set -euo pipefail

TOOL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TOOL_DIR/../.." && pwd)"
KAFKA_LOCAL_HOME="${KAFKA_LOCAL_HOME:-$REPO_ROOT/.cache/kafka}"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
KAFKA_FORMAT_ARGS="${KAFKA_FORMAT_ARGS:-}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
# Kafka's own defaults from bin/kafka-run-class.sh.
KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-120}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"

# A relative KAFKA_LOCAL_HOME would change meaning with the cwd; the JVM also needs absolute paths.
mkdir -p "$KAFKA_LOCAL_HOME"
KAFKA_LOCAL_HOME="$(cd "$KAFKA_LOCAL_HOME" && pwd)"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
LIB="$KAFKA_LOCAL_HOME/lib"
DATA="$KAFKA_LOCAL_HOME/data"
LOGS="$KAFKA_LOCAL_HOME/logs"
CONF="$KAFKA_LOCAL_HOME/server.properties"
PID_FILE="$KAFKA_LOCAL_HOME/kafka.pid"
LIB_STAMP="$LIB/.kafka-version"
DATA_STAMP="$DATA/.kafka-version"

case "$KAFKA_VERSION" in
  3.9.*) PROFILE=kafka3; LOG_OPTS=("-Dlog4j.configuration=file:$TOOL_DIR/log4j.properties") ;;
  4.*) PROFILE=kafka4; LOG_OPTS=("-Dlog4j2.configurationFile=$TOOL_DIR/log4j2.properties") ;;
  *) echo "KAFKA_VERSION must be 3.9.x or 4.x (got '$KAFKA_VERSION')" >&2; exit 64 ;;
esac

die() { echo "kafka-local: $*" >&2; exit 1; }

alive() {  # the process exists and is not a zombie (a dead child nobody has reaped yet)
  kill -0 "$1" 2>/dev/null || return 1
  local state; state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ "$state" != Z ] && [ "$state" != X ]
}

running_pid() {  # prints the pid of this instance's broker if it is running
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && alive "$pid" || return 1
  # A stale pid file whose number now belongs to another process must not count.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF " kafka.Kafka $CONF" || return 1
  echo "$pid"
}

port_in_use() {  # something accepts TCP connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cluster_id() { sed -n 's/^cluster.id=//p' "$DATA/meta.properties" 2>/dev/null; }

probe() {  # probe ARGS...: Metadata round trip against this instance
  "$PYTHON" "$TOOL_DIR/kafka_ready.py" --bootstrap "$BOOTSTRAP" "$@"
}

fetch() {
  if running_pid >/dev/null; then die "stop the broker before replacing its jars"; fi
  # Start from an empty folder: the jars of two Kafka versions on one classpath break the broker.
  rm -rf "$LIB"; mkdir -p "$LIB" "$LOGS"
  echo "kafka-local: resolving the jars of Kafka $KAFKA_VERSION with Maven" >&2
  if ! "$MVN" -B -f "$TOOL_DIR/pom.xml" -P "$PROFILE" "-Dkafka.version=$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB" \
      >"$LOGS/maven.out" 2>&1; then
    tail -n 30 "$LOGS/maven.out" >&2
    die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see $LOGS/maven.out)"
  fi
  [ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing in $LIB"
  echo "$KAFKA_VERSION" >"$LIB_STAMP"
}

render_config() {
  local subst=(-e "s|@KAFKA_DATA_DIR@|$DATA|g" -e "s|@KAFKA_LOCAL_HOME@|$KAFKA_LOCAL_HOME|g"
               -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g")
  {
    sed "${subst[@]}" "$TOOL_DIR/server.properties"
    if [ -n "$KAFKA_EXTRA_PROPERTIES" ]; then
      [ -f "$KAFKA_EXTRA_PROPERTIES" ] || die "KAFKA_EXTRA_PROPERTIES: no such file: $KAFKA_EXTRA_PROPERTIES"
      printf '\n############################# From %s #############################\n' "$KAFKA_EXTRA_PROPERTIES"
      sed "${subst[@]}" "$KAFKA_EXTRA_PROPERTIES"
    fi
  } >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
}

format_storage() {
  # A new cluster id per new data folder, made the way Kafka's Uuid.randomUuid() makes it
  # (16 random bytes, URL-safe base64 without padding, never starting with '-', which the
  # argument parser would take for an option) without paying for a second JVM start.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* ]] || break
  done
  [[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "bad cluster id: $id"
  # Split on whitespace without glob expansion: SCRAM specs contain [ ].
  local extra=()
  read -r -a extra <<<"$KAFKA_FORMAT_ARGS"
  "$JAVA" -Xmx256m "${LOG_OPTS[@]}" -cp "$LIB/*" kafka.tools.StorageTool \
    format -t "$id" -c "$CONF" "${extra[@]}" >"$LOGS/format.out" 2>&1 \
    || { cat "$LOGS/format.out" >&2; die "formatting $DATA failed"; }
  echo "$KAFKA_VERSION" >"$DATA_STAMP"
}

start() {
  local pid
  if pid="$(running_pid)"; then
    probe --timeout "$KAFKA_READY_TIMEOUT" --pid-file "$PID_FILE" --cluster-id "$(cluster_id)" \
      || die "broker (pid $pid) runs but does not answer on $BOOTSTRAP; see $LOGS/kafka.out"
    echo "Kafka already running on $BOOTSTRAP (pid $pid)"
    return 0
  fi
  # Without this check the readiness probe could be answered by someone else's broker.
  port_in_use "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (set KAFKA_PORT)"
  port_in_use "$KAFKA_CONTROLLER_PORT" \
    && die "port $KAFKA_CONTROLLER_PORT is taken by another process (set KAFKA_CONTROLLER_PORT)"
  if [ -f "$DATA/meta.properties" ] && [ "$(cat "$DATA_STAMP" 2>/dev/null)" != "$KAFKA_VERSION" ]; then
    die "$DATA was formatted by Kafka $(cat "$DATA_STAMP" 2>/dev/null || echo '?'), not $KAFKA_VERSION; run '$0 reset' first"
  fi
  mkdir -p "$DATA" "$LOGS"
  render_config
  if [ "$(cat "$LIB_STAMP" 2>/dev/null)" != "$KAFKA_VERSION" ]; then fetch; fi
  [ -f "$DATA/meta.properties" ] || format_storage

  # shellcheck disable=SC2086  # the *_OPTS variables are meant to split into words
  nohup "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS "${LOG_OPTS[@]}" \
    -Dkafka.logs.dir="$LOGS" -cp "$LIB/*" kafka.Kafka "$CONF" \
    >"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &  # 9>&-: the broker must not inherit the lock
  echo $! >"$PID_FILE"

  if ! probe --timeout "$KAFKA_READY_TIMEOUT" --pid-file "$PID_FILE" --cluster-id "$(cluster_id)"; then
    echo "kafka-local: Kafka did not become ready; last lines of $LOGS/kafka.out:" >&2
    tail -n 40 "$LOGS/kafka.out" >&2 || true
    stop >&2 || true
    exit 1
  fi
  echo "Kafka $KAFKA_VERSION ready on $BOOTSTRAP (pid $(cat "$PID_FILE"), logs in $LOGS/kafka.out)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$PID_FILE"; echo "Kafka not running"; return 0; fi
  kill -TERM "$pid"  # Kafka's shutdown hook performs a clean, controlled shutdown
  local waited=0
  while alive "$pid"; do
    if [ "$waited" -ge "$KAFKA_STOP_TIMEOUT" ]; then
      echo "kafka-local: broker (pid $pid) still alive after ${KAFKA_STOP_TIMEOUT}s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 1; waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
  echo "Kafka stopped"
}

status() {
  local pid
  pid="$(running_pid)" || { echo "Kafka not running"; return 1; }
  probe --timeout 5 --pid-file "$PID_FILE" --cluster-id "$(cluster_id)" \
    || { echo "Kafka (pid $pid) does not answer on $BOOTSTRAP"; return 1; }
  echo "Kafka running on $BOOTSTRAP (pid $pid)"
}

reset() {
  stop
  rm -rf "$DATA" "$CONF"
  echo "Kafka data deleted; the next start formats a new cluster"
}

create_topics() {
  [ "$#" -gt 0 ] || die "usage: $0 create-topics NAME:PARTITIONS ..."
  local args=() spec
  for spec in "$@"; do args+=(--topic "$spec"); done
  probe --timeout 30 "${args[@]}"
}

command="${1:-}"
[ "$#" -gt 0 ] && shift
case "$command" in
  start|stop|reset|fetch)
    # One command at a time per instance: two concurrent starts must not format or launch twice.
    exec 9>"$KAFKA_LOCAL_HOME/.lock"
    flock 9
    "$command" ;;
  status) status ;;
  create-topics) create_topics "$@" ;;
  *) sed -n '2,32p' "$0" >&2; exit 64 ;;
esac
