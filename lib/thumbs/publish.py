"""Upload PDFs to S3 and publish the matching S3 event notifications to Kafka.

For watching the stream work on the local services (and for the tests): each file becomes an
object under `s3://BUCKET/PREFIX`, then a notification shaped as S3 sends it (form-encoded key,
ETag, size, a sequencer that grows) goes to the topic.

    python -m thumbs.publish lib/thumbs/samples --bucket uploads --prefix incoming/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from thumbs.events import s3_notification
from thumbs.storage import S3Settings, s3_client

LOCAL_S3_ENDPOINT = "http://127.0.0.1:9000"


def producer(bootstrap_servers: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})


def next_sequencer() -> str:
    """A hexadecimal sequencer that grows with time, like S3's."""
    return f"{time.time_ns():020X}"


def upload_and_announce(
    files: list[Path], root: Path, bucket: str, prefix: str, settings: S3Settings, kafka: Any, topic: str
) -> int:
    client = s3_client(settings)
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for path in files:
        key = prefix + path.relative_to(root).as_posix()
        data = path.read_bytes()
        response = client.put_object(Bucket=bucket, Key=key, Body=data)
        record = s3_notification(
            bucket, key, etag=response["ETag"].strip('"'), size=len(data), sequencer=next_sequencer()
        )
        kafka.produce(topic, json.dumps({"Records": [record]}).encode())
    kafka.flush(30)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thumbs.publish", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="PDF files or folders of them")
    parser.add_argument("--bucket", default="uploads")
    parser.add_argument("--prefix", default="incoming/")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="pdf-uploads")
    parser.add_argument("--s3-endpoint-url", default=LOCAL_S3_ENDPOINT)
    args = parser.parse_args(argv)
    published = 0
    kafka = producer(args.bootstrap_servers)
    settings = S3Settings.from_env(endpoint_url=args.s3_endpoint_url)
    for raw in args.paths:
        path = Path(raw)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf") if path.is_dir() else [path]
        root = path if path.is_dir() else path.parent
        published += upload_and_announce(files, root, args.bucket, args.prefix, settings, kafka, args.topic)
    print(f"published {published} uploads to s3://{args.bucket}/{args.prefix} and topic {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
