#!/usr/bin/env bash
# Start, stop or check the local services the embedded default and the tests use:
# a real Apache Kafka broker (scripts/kafka.sh) and an S3-compatible server (moto, over HTTP).
#
#   scripts/services.sh start|stop|status
#
# Environment: KAFKA_PORT [9092], THUMBS_S3_PORT [9000], and kafka.sh's own settings.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.cache/services"
s3_port=${THUMBS_S3_PORT:-9000}
s3_pid="$state/s3.pid"
python="$root/.venv/bin/python"

s3_running() { [[ -f "$s3_pid" ]] && kill -0 "$(cat "$s3_pid")" 2>/dev/null; }

start_s3() {
    if s3_running; then
        echo "services: S3 server already running on 127.0.0.1:$s3_port" >&2
        return
    fi
    mkdir -p "$state"
    setsid "$python" -m moto.server -H 127.0.0.1 -p "$s3_port" >"$state/s3.log" 2>&1 &
    echo $! >"$s3_pid"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null; then
            echo "services: S3 server on http://127.0.0.1:$s3_port" >&2
            return
        fi
        sleep 0.1
    done
    echo "services: the S3 server did not start; see $state/s3.log" >&2
    exit 1
}

stop_s3() {
    if s3_running; then
        kill "$(cat "$s3_pid")" 2>/dev/null || true
    fi
    rm -f "$s3_pid"
}

case "${1:-}" in
    start)
        "$root/scripts/bootstrap.sh"
        "$root/scripts/kafka.sh" start
        start_s3
        ;;
    stop)
        "$root/scripts/kafka.sh" stop || true
        stop_s3
        ;;
    status)
        "$root/scripts/kafka.sh" status && s3_running
        ;;
    *)
        echo "usage: scripts/services.sh start|stop|status" >&2
        exit 2
        ;;
esac
