#!/usr/bin/env bash
# A real schema registry with the Confluent Schema Registry REST API, for the demo and the tests:
# Apicurio Registry run as one JVM on 127.0.0.1 from its finished distribution on Maven Central
# (no Docker, nothing built), in-memory storage (every start begins empty, ids restart at 1).
#
#   registry-local.sh start    resolve the distribution if needed, start in the background, return
#                              once the Confluent API answers (idempotent)
#   registry-local.sh stop     SIGTERM, SIGKILL after $REGISTRY_STOP_TIMEOUT s (idempotent)
#   registry-local.sh status   exit 0 running and answering, 1 running but not answering, 3 stopped
#   registry-local.sh url      print the Confluent API base URL (NER_SCHEMA_REGISTRY_URL)
#   registry-local.sh fetch    resolve the distribution only
#   registry-local.sh logs     print the server log
#
# Environment (all optional):
#   REGISTRY_LOCAL_HOME     state folder: dist-<version>/, run-<port>/ (pid, log)
#                           default: <repo>/.cache/registry
#   REGISTRY_PORT           HTTP port on 127.0.0.1 (API at /apis/ccompat/v7)      default: 18081
#   REGISTRY_MGMT_PORT      Quarkus management port (3.x: /health/ready)           default: port + 1
#   APICURIO_VERSION        2.6.x runs on Java 17; 3.x needs Java 21+              default: 2.6.13.Final
#   REGISTRY_JAVA           the java command; otherwise JAVA_HOME, PATH and the usual JVM folders
#                           are searched for one new enough
#   REGISTRY_JAVA_OPTS      JVM flags (these start faster and smaller than the defaults)
#                           default: -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xms64m -Xmx512m
#   REGISTRY_COMPATIBILITY  global compatibility level set after start; NONE = leave it
#                           default: BACKWARD (Confluent's default)
#   REGISTRY_START_TIMEOUT  seconds to wait for the API                            default: 120
#   REGISTRY_STOP_TIMEOUT   seconds to wait for a clean shutdown                   default: 30
#   MVN, MAVEN_OPTS         the mvn command and its options (e.g. -Dmaven.repo.local=DIR)
# Any APICURIO_* / QUARKUS_* variable in the environment reaches the server.
set -euo pipefail

TOOL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TOOL_DIR/../.." && pwd)"
REGISTRY_LOCAL_HOME="${REGISTRY_LOCAL_HOME:-$REPO_ROOT/.cache/registry}"
APICURIO_VERSION="${APICURIO_VERSION:-2.6.13.Final}"
REGISTRY_HOST=127.0.0.1
REGISTRY_PORT="${REGISTRY_PORT:-18081}"
REGISTRY_MGMT_PORT="${REGISTRY_MGMT_PORT:-$((REGISTRY_PORT + 1))}"
REGISTRY_JAVA_OPTS="${REGISTRY_JAVA_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xms64m -Xmx512m}"
REGISTRY_COMPATIBILITY="${REGISTRY_COMPATIBILITY:-BACKWARD}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-120}"
REGISTRY_STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-30}"
MVN="${MVN:-mvn}"

mkdir -p "$REGISTRY_LOCAL_HOME"
REGISTRY_LOCAL_HOME="$(cd "$REGISTRY_LOCAL_HOME" && pwd)"  # the JVM runs in another folder
DIST_DIR="$REGISTRY_LOCAL_HOME/dist-$APICURIO_VERSION"
RUN_DIR="$REGISTRY_LOCAL_HOME/run-$REGISTRY_PORT"
PID_FILE="$RUN_DIR/registry.pid"
LOG_FILE="$RUN_DIR/registry.log"
BASE_URL="http://$REGISTRY_HOST:$REGISTRY_PORT"
API_URL="$BASE_URL/apis/ccompat/v7"

log() { echo "registry-local: $*" >&2; }
die() { log "$*"; exit 1; }

api_up() { curl -sf -o /dev/null --max-time 2 "$API_URL/subjects"; }

port_in_use() { (exec 3<>"/dev/tcp/$REGISTRY_HOST/$1") 2>/dev/null; }

alive() {  # the process exists and is not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  local state; state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ "$state" != Z ] && [ "$state" != X ]
}

running_pid() {  # the pid of this instance's server, if it runs
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [ -n "$pid" ] && alive "$pid" || return 1
  # A stale pid file whose number now belongs to another process must not count.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dregistry.local.port=$REGISTRY_PORT " || return 1
  echo "$pid"
}

java_major() {
  "$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}' | awk -F. '{print ($1 == "1") ? $2 : $1}'
}

find_java() {  # $1 = the lowest Java major version the server runs on
  local min="$1" candidate version
  if [ -n "${REGISTRY_JAVA:-}" ]; then
    version="$(java_major "$REGISTRY_JAVA" || true)"
    [ "${version:-0}" -ge "$min" ] 2>/dev/null || die "REGISTRY_JAVA=$REGISTRY_JAVA is not Java $min+ (got '${version:-none}')"
    echo "$REGISTRY_JAVA"; return
  fi
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    version="$(java_major "$candidate" 2>/dev/null || true)"
    if [ "${version:-0}" -ge "$min" ] 2>/dev/null; then echo "$candidate"; return; fi
  done
  die "Apicurio Registry $APICURIO_VERSION needs Java $min+; set REGISTRY_JAVA (or use APICURIO_VERSION=2.6.13.Final on Java 17)"
}

launcher_jar() {  # quarkus-run.jar (3.x) or *-runner.jar (2.x)
  local jar
  for jar in "$1/quarkus-run.jar" "$1"/*-runner.jar; do
    [ -f "$jar" ] && { echo "$jar"; return 0; }
  done
  return 1
}

fetch() {
  # The distribution folder only ever appears complete: it is unpacked elsewhere, then renamed.
  [ -d "$DIST_DIR" ] && launcher_jar "$DIST_DIR" >/dev/null && return 0
  local partial="$DIST_DIR.partial"
  rm -rf "$partial"
  log "resolving io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all with Maven (once)"
  if ! "$MVN" -B -q -f "$TOOL_DIR/pom.xml" -Dapicurio.version="$APICURIO_VERSION" \
      -Dregistry.dist.dir="$partial" generate-resources >"$REGISTRY_LOCAL_HOME/maven.out" 2>&1; then
    tail -n 30 "$REGISTRY_LOCAL_HOME/maven.out" >&2
    rm -rf "$partial"
    die "Maven could not resolve Apicurio Registry $APICURIO_VERSION (see $REGISTRY_LOCAL_HOME/maven.out)"
  fi
  launcher_jar "$partial" >/dev/null || { rm -rf "$partial"; die "the distribution has no launcher jar"; }
  mv "$partial" "$DIST_DIR"
}

start() {
  local pid
  if pid="$(running_pid)"; then
    api_up || die "registry (pid $pid) runs but $API_URL does not answer; see $LOG_FILE"
    echo "Schema registry already running at $API_URL (pid $pid)"
    return 0
  fi
  # Without this check the readiness probe could be answered by someone else's server.
  port_in_use "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by another process (set REGISTRY_PORT)"
  port_in_use "$REGISTRY_MGMT_PORT" && die "port $REGISTRY_MGMT_PORT is taken by another process (set REGISTRY_MGMT_PORT)"
  fetch
  local jar min_java=21
  jar="$(launcher_jar "$DIST_DIR")"
  case "$jar" in *-runner.jar) min_java=17 ;; esac
  local java; java="$(find_java "$min_java")"
  mkdir -p "$RUN_DIR/tmp"
  : >"$LOG_FILE"
  local started; started=$(date +%s%N)
  # shellcheck disable=SC2086  # the JVM options are meant to split into words
  (
    cd "$RUN_DIR"
    export QUARKUS_HTTP_HOST="$REGISTRY_HOST" QUARKUS_HTTP_PORT="$REGISTRY_PORT" HTTP_PORT="$REGISTRY_PORT"
    export QUARKUS_MANAGEMENT_HOST="$REGISTRY_HOST" QUARKUS_MANAGEMENT_PORT="$REGISTRY_MGMT_PORT"
    export QUARKUS_HTTP_ACCESS_LOG_ENABLED="${QUARKUS_HTTP_ACCESS_LOG_ENABLED:-false}"
    # In-memory H2, stated explicitly: the other storage kind (kafkasql) would use the broker
    # on localhost:9092. A small connection pool starts faster (3.x; 2.x ignores these).
    export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=h2
    export APICURIO_DATASOURCE_JDBC_INITIAL_SIZE="${APICURIO_DATASOURCE_JDBC_INITIAL_SIZE:-2}"
    export APICURIO_DATASOURCE_JDBC_MIN_SIZE="${APICURIO_DATASOURCE_JDBC_MIN_SIZE:-2}"
    # setsid: a Ctrl-C in the calling terminal must not reach the server.
    exec setsid "$java" $REGISTRY_JAVA_OPTS -Djava.io.tmpdir="$RUN_DIR/tmp" \
      -Dregistry.local.port="$REGISTRY_PORT" -jar "$jar" </dev/null >>"$LOG_FILE" 2>&1 9>&-
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$(( $(date +%s) + REGISTRY_START_TIMEOUT ))
  until api_up; do
    if ! alive "$pid"; then
      rm -f "$PID_FILE"
      tail -n 40 "$LOG_FILE" >&2 || true
      die "the server exited during start-up (log: $LOG_FILE)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$LOG_FILE" >&2 || true
      stop >&2
      die "the API did not answer within ${REGISTRY_START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  if [ "$REGISTRY_COMPATIBILITY" != NONE ]; then
    curl -sf -o /dev/null --max-time 10 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
      --data "{\"compatibility\": \"$REGISTRY_COMPATIBILITY\"}" "$API_URL/config" \
      || { stop >&2; die "could not set the global compatibility $REGISTRY_COMPATIBILITY"; }
  fi
  echo "Schema registry (Apicurio $APICURIO_VERSION) ready at $API_URL in $(( ($(date +%s%N) - started) / 1000000 )) ms (pid $pid, log $LOG_FILE)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$PID_FILE"; echo "Schema registry not running"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  local tenths=0
  while alive "$pid"; do
    if [ "$tenths" -ge $((REGISTRY_STOP_TIMEOUT * 10)) ]; then
      log "pid $pid still alive after ${REGISTRY_STOP_TIMEOUT}s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1; tenths=$((tenths + 1))
  done
  rm -f "$PID_FILE"
  echo "Schema registry stopped"
}

status() {
  local pid
  pid="$(running_pid)" || { echo "Schema registry not running"; return 3; }
  api_up || { echo "Schema registry (pid $pid) does not answer at $API_URL"; return 1; }
  echo "Schema registry running at $API_URL (pid $pid)"
}

command="${1:-}"
case "$command" in
  start|stop|fetch)
    # One command at a time per state folder: two starts must not fetch or launch twice.
    exec 9>"$REGISTRY_LOCAL_HOME/.lock"
    flock 9
    "$command" ;;
  status) status ;;
  url) echo "$API_URL" ;;
  logs) cat "$LOG_FILE" ;;
  *) sed -n '2,28p' "$0" >&2; exit 64 ;;
esac
