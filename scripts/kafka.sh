#!/usr/bin/env bash
# Run a single-node Apache Kafka 4.x broker (KRaft, combined broker+controller)
# for local development and tests, without Docker.
#
# The broker is assembled from the Apache jars on Maven Central rather than
# the binary tarball, so it only needs a JDK (17+) and Maven.
#
# Usage: scripts/kafka.sh fetch|start|stop|status|restart
#
# Environment (defaults in brackets):
#   KAFKA_VERSION          Kafka release, Scala 2.13 build [4.0.1]
#   KAFKA_PORT             client (PLAINTEXT) port [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller port [9093]
#   KAFKA_DATA_DIR         config, pid file and topic data [<repo>/.cache/kafka-data]
#   KAFKA_LOG              broker log file [$KAFKA_DATA_DIR/kafka.log]
#   KAFKA_HEAP_OPTS        JVM heap flags [-Xms256m -Xmx512m]
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to be ready [120]
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean shutdown before SIGKILL [30]
#   KAFKA_LOG4J_VERSION    log4j2 backend version [2.24.3]
#   JAVA_HOME              JDK to use [java on PATH]
#
# `status` exits 0 when the broker is running and 3 when it is not.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

KAFKA_VERSION="${KAFKA_VERSION:-4.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.cache/kafka-data}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
# Kafka 4.0 logs through slf4j 1.7 and log4j2 but its pom does not pull in a
# backend; this is the log4j2 version the 4.0 distribution ships.
KAFKA_LOG4J_VERSION="${KAFKA_LOG4J_VERSION:-2.24.3}"
# Pinned so the result does not depend on Maven's built-in (old) default.
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

HOST="127.0.0.1"
BOOTSTRAP="$HOST:$KAFKA_PORT"
CACHE_DIR="$REPO_ROOT/.cache"
M2_REPO="$CACHE_DIR/m2"
VERSION_DIR="$CACHE_DIR/kafka/$KAFKA_VERSION"
LIBS_DIR="$VERSION_DIR/libs"
# Written last by fetch, so a half-finished download is never taken as done.
LIBS_MARKER="$LIBS_DIR/.complete"

if [[ -n "${JAVA_HOME:-}" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="java"
fi

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

# Serialise fetch and start, so parallel callers (for example test workers)
# neither resolve into the same folder nor start two brokers. The lock is
# held on fd 9 until the script exits.
take_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    mkdir -p "$(dirname "$1")"
    exec 9>"$1"
    flock 9
}

# Paths in env vars may be relative; the broker runs detached, so pin them.
abs_path() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

init_paths() {
    KAFKA_DATA_DIR="$(abs_path "$KAFKA_DATA_DIR")"
    KAFKA_LOG="$(abs_path "${KAFKA_LOG:-$KAFKA_DATA_DIR/kafka.log}")"
    PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
    CONFIG_FILE="$KAFKA_DATA_DIR/server.properties"
    LOG4J_FILE="$KAFKA_DATA_DIR/log4j2.properties"
    METADATA_DIR="$KAFKA_DATA_DIR/kraft"
}

# ---------------------------------------------------------------- fetch

cmd_fetch() {
    if [[ -f "$LIBS_MARKER" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found; install Maven to fetch the Kafka jars"
    take_lock "$VERSION_DIR/.lock"
    # Another caller may have finished while we waited for the lock.
    if [[ -f "$LIBS_MARKER" ]]; then
        return 0
    fi

    local work="$VERSION_DIR/resolve"
    rm -rf "$work"
    mkdir -p "$work"
    # The broker (kafka_2.13) declares the rest of the server modules as
    # runtime dependencies; only the logging backend has to be added.
    cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF

    log "resolving Kafka $KAFKA_VERSION jars with Maven (first run only)"
    if ! mvn -B -q -f "$work/pom.xml" \
        -Dmaven.repo.local="$M2_REPO" \
        "$DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime \
        -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
        tail -n 40 "$work/mvn.log" >&2
        die "Maven could not resolve Kafka $KAFKA_VERSION (full log: $work/mvn.log)"
    fi
    [[ -f "$work/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] \
        || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolve"

    # Swap in the finished folder in one step.
    rm -rf "$LIBS_DIR"
    mv "$work/libs" "$LIBS_DIR"
    touch "$LIBS_MARKER"
    rm -rf "$work"
    log "jars ready in $LIBS_DIR"
}

# ---------------------------------------------------------------- helpers

read_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# True only if the pid is alive and really is our broker, so a stale pid
# file whose number got reused by another process is not mistaken for it.
# A zombie has an empty cmdline, so it counts as gone too.
is_our_broker() {
    local pid="$1" cmdline
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *kafka.Kafka* && "$cmdline" == *"$CONFIG_FILE"* ]]
}

running_pid() {
    local pid
    pid="$(read_pid)" || return 1
    is_our_broker "$pid" || return 1
    printf '%s\n' "$pid"
}

# The address a running broker was started with, which may differ from the
# current env vars.
running_bootstrap() {
    local line
    line="$(grep -m1 '^advertised.listeners=PLAINTEXT://' "$CONFIG_FILE" 2>/dev/null)" || {
        echo "$BOOTSTRAP"
        return 0
    }
    echo "${line#advertised.listeners=PLAINTEXT://}"
}

port_open() {
    # Bash's /dev/tcp avoids depending on nc or similar tools.
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

write_config() {
    # Regenerated on every start so env var changes take effect.
    cat >"$CONFIG_FILE" <<EOF
# Generated by scripts/kafka.sh; edits are overwritten on start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$METADATA_DIR
num.partitions=1
auto.create.topics.enable=true
# One node: internal topics must not ask for more replicas than exist,
# otherwise consumer groups and transactions never become available.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers in tests should get partitions at once, not after 3 s.
group.initial.rebalance.delay.ms=0
# One partition instead of 50 for the internal topics: they are created on
# first use, and that is much quicker with one.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
EOF

    # Plain properties config; the YAML one Kafka ships needs extra jars.
    # log4j's own shutdown hook would stop logging before Kafka's shutdown
    # has run, hiding why a stop was slow.
    cat >"$LOG4J_FILE" <<'EOF'
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

java_opts() {
    # Roughly the flags of Kafka's own launcher, with a small heap.
    # shellcheck disable=SC2206  # heap options are meant to word-split
    JAVA_OPTS=($KAFKA_HEAP_OPTS
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$LOG4J_FILE"
        -cp "$LIBS_DIR/*")
}

format_storage() {
    # Formatting twice fails, so only format a data dir that has no metadata.
    if [[ -f "$METADATA_DIR/meta.properties" ]]; then
        return 0
    fi
    # A cluster id is 16 random bytes in unpadded URL-safe base64, the same
    # as `kafka-storage random-uuid`; making it here saves a JVM start.
    local cluster_id
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    log "formatting KRaft storage in $METADATA_DIR (cluster id $cluster_id)"
    if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$CONFIG_FILE" --ignore-formatted >>"$KAFKA_LOG" 2>&1; then
        tail -n 20 "$KAFKA_LOG" >&2
        die "formatting storage failed (log: $KAFKA_LOG)"
    fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local pid
    cmd_fetch
    take_lock "$KAFKA_DATA_DIR/.lock"
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        running_bootstrap
        return 0
    fi
    rm -f "$PID_FILE"

    command -v "$JAVA" >/dev/null 2>&1 || die "java not found; install a JDK 17+ or set JAVA_HOME"

    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "port $port on $HOST is already in use by another process"
        fi
    done

    mkdir -p "$KAFKA_DATA_DIR" "$(dirname "$KAFKA_LOG")"
    write_config
    java_opts
    format_storage

    # Remember where this run's output starts, to look for its ready line.
    local log_offset=0
    if [[ -f "$KAFKA_LOG" ]]; then
        log_offset="$(stat -c %s "$KAFKA_LOG")"
    fi

    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (log: $KAFKA_LOG)"
    local started=$SECONDS detach=()
    # setsid detaches the broker from this shell's session so it survives
    # the caller exiting or being interrupted.
    if command -v setsid >/dev/null 2>&1; then
        detach=(setsid)
    else
        detach=(nohup)
    fi
    # The inner shell records its own pid and then becomes java, so the pid
    # file holds the broker's pid whether or not setsid had to fork. The
    # lock's fd is closed for it, or the broker would hold the lock for life.
    # shellcheck disable=SC2016  # $$ and $1 belong to the inner shell
    "${detach[@]}" sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$PID_FILE" \
        "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$CONFIG_FILE" \
        >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &

    # After a restart the controller keeps the old broker registration until
    # its session expires (broker.session.timeout.ms, 9 s by default), so a
    # start right after a stop is slower than a fresh one. The default is
    # kept: a shorter session risks fencing the only broker under load.
    #
    # The socket is bound before the broker serves requests, so wait for
    # both the open port and the broker's own "started" line.
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if pid="$(read_pid)" && ! is_our_broker "$pid"; then
            tail -n 30 "$KAFKA_LOG" >&2
            rm -f "$PID_FILE"
            die "broker exited during startup (log: $KAFKA_LOG)"
        fi
        # Process substitution, not a pipe: with pipefail, grep -q quitting
        # early would make tail's SIGPIPE fail the test.
        if port_open "$KAFKA_PORT" \
            && grep -q 'Kafka Server started' < <(tail -c +"$((log_offset + 1))" "$KAFKA_LOG"); then
            log "ready (pid $(read_pid)) after $((SECONDS - started))s"
            echo "$BOOTSTRAP"
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$KAFKA_LOG" >&2
    die "broker not ready after ${KAFKA_START_TIMEOUT}s (log: $KAFKA_LOG); run '$0 stop' to clean up"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while is_our_broker "$pid"; do
        if ((SECONDS >= deadline)); then
            log "no clean shutdown after ${KAFKA_STOP_TIMEOUT}s, killing"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    # Let the kernel finish tearing it down so the ports are free on return.
    deadline=$((SECONDS + 10))
    while is_our_broker "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid bootstrap
    if pid="$(running_pid)"; then
        bootstrap="$(running_bootstrap)"
        if port_open "${bootstrap##*:}"; then
            echo "running (pid $pid) on $bootstrap"
        else
            echo "running (pid $pid), not accepting connections on $bootstrap yet"
        fi
        return 0
    fi
    echo "not running"
    return 3
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        fetch) cmd_fetch ;;
        start) init_paths; cmd_start ;;
        stop) init_paths; cmd_stop ;;
        status) init_paths; cmd_status ;;
        restart) init_paths; cmd_stop; cmd_start ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
