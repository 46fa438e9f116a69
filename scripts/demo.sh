#!/usr/bin/env bash
# The stream end to end on this machine: start the local Kafka broker and S3 server, upload the
# bundled sample PDFs and publish their S3 events, run the stream until the topic is drained,
# then print what landed in the results table. Thumbnails go to ./out/thumbnails.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/services.sh" start

# The local S3 server accepts any credentials; real ones are never needed here.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_ENDPOINT_URL_S3=${AWS_ENDPOINT_URL_S3:-http://127.0.0.1:${THUMBS_S3_PORT:-9000}}

PYTHONPATH="$root/lib" "$root/.venv/bin/python" -m thumbs.publish "$root/lib/thumbs/samples" \
    --s3-endpoint-url "$AWS_ENDPOINT_URL_S3"
"$root/spark-submit.sh" "$root/jobs/stream.py" --trigger available-now "$@"
PYTHONPATH="$root/lib" "$root/.venv/bin/python" -m thumbs.report out/results
echo "stop the local services with: scripts/services.sh stop"
