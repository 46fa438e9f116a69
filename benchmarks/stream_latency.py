"""Latency and throughput of the stream job on local Spark, against the local services.

Why: an upload's thumbnail is only useful once its row is readable. This command starts the
stream (`jobs/stream.py`, trigger "0 seconds": a new micro-batch as soon as the last one ends),
then

0. publishes `--warmup` events and waits for their rows, so the first render on each executor
   (starting its Python worker and render child) is charged to nobody;
1. publishes `--events` upload events at `--rate` per second and measures, for each, the time
   from publishing the event to the commit of the micro-batch holding its row (the driver logs
   "stream batch done" right after the Delta commit), and prints the median, 95th percentile
   and maximum;
2. publishes `--burst` events at once and measures documents per second from the first batch
   that sees them to the last commit.

Needs the local broker and S3 server: `scripts/services.sh start`.

    python benchmarks/stream_latency.py [--events 200] [--rate 20] [--burst 400] [--warmup 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lib"))

from thumbs.events import s3_notification  # noqa: E402
from thumbs.publish import next_sequencer, producer  # noqa: E402
from thumbs.storage import S3Settings, s3_client  # noqa: E402

DONE = re.compile(r"^(\S+ \S+) INFO thumbs\.stream stream batch done .* batch=(\d+) .* rendered=(\d+)")
SAMPLE = REPO / "lib" / "thumbs" / "samples" / "sample-files" / "minimal-document.pdf"


def batch_commits(log: Path) -> dict[int, tuple[float, int]]:
    """Each batch's commit time (from the driver's log line) and documents rendered."""
    commits = {}
    for line in log.read_text(errors="replace").splitlines():
        match = DONE.match(line)
        if match:
            moment = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").astimezone()
            commits[int(match[2])] = (moment.timestamp(), int(match[3]))
    return commits


def wait_rendered(log: Path, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(n for _, n in batch_commits(log).values()) >= total:
            return
        time.sleep(0.2)
    raise SystemExit(f"only {sum(n for _, n in batch_commits(log).values())} of {total} rendered")


def upload(client, bucket: str, keys: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    data = SAMPLE.read_bytes()
    records = []
    for key in keys:
        etag = client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
        records.append(s3_notification(bucket, key, etag=etag, size=len(data)))
    return records


def publish(kafka, topic: str, record: dict) -> float:  # type: ignore[no-untyped-def]
    record["s3"]["object"]["sequencer"] = next_sequencer()
    sent = time.time()
    kafka.produce(topic, json.dumps({"Records": [record]}).encode())
    kafka.poll(0)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20, help="events rendered before measuring (default: %(default)s)")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--s3-endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000"))
    args = parser.parse_args(argv)
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    os.environ["AWS_ENDPOINT_URL_S3"] = args.s3_endpoint_url

    run = uuid.uuid4().hex[:8]
    topic, bucket = f"latency-{run}", f"latency-{run}"
    client = s3_client(S3Settings(endpoint_url=args.s3_endpoint_url))
    client.create_bucket(Bucket=bucket)
    warmup = upload(client, bucket, [f"warmup/{i:04d}.pdf" for i in range(args.warmup)])
    steady = upload(client, bucket, [f"steady/{i:04d}.pdf" for i in range(args.events)])
    burst = upload(client, bucket, [f"burst/{i:04d}.pdf" for i in range(args.burst)])
    kafka = producer(args.bootstrap_servers)
    kafka.produce(topic, b'{"Service": "Amazon S3", "Event": "s3:TestEvent"}')  # creates the topic
    kafka.flush(30)

    work = Path(tempfile.mkdtemp(prefix="stream-latency-"))
    log = work / "stream.log"
    command = [
        str(REPO / "spark-submit.sh"), str(REPO / "jobs" / "stream.py"),
        "--bootstrap-servers", args.bootstrap_servers, "--topic", topic, "--trigger", "0 seconds",
        "--dest", str(work / "thumbs"), "--table", str(work / "results"),
        "--checkpoint", str(work / "checkpoint"), "--quarantine-table", "none",
    ]
    with log.open("w") as out:
        stream = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while "stream batch done" not in log.read_text(errors="replace"):
            time.sleep(0.5)  # start-up: the first (test event) batch has committed
        time.sleep(3)
        for record in warmup:
            publish(kafka, topic, record)
        kafka.flush(30)
        wait_rendered(log, args.warmup, timeout=300)
        warm_batches = batch_commits(log)
        time.sleep(3)

        sent = {}
        started = time.monotonic()
        for index, record in enumerate(steady):
            time.sleep(max(0.0, started + index / args.rate - time.monotonic()))
            sent[record["s3"]["object"]["key"]] = publish(kafka, topic, record)
        kafka.flush(30)
        wait_rendered(log, args.warmup + args.events, timeout=300)
        steady_batches = {b: v for b, v in batch_commits(log).items() if b not in warm_batches}

        burst_sent = time.time()
        for record in burst:
            publish(kafka, topic, record)
        kafka.flush(30)
        wait_rendered(log, args.warmup + args.events + args.burst, timeout=600)
        burst_batches = {
            b: v for b, v in batch_commits(log).items() if b not in warm_batches and b not in steady_batches
        }
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait()

    from thumbs.spark import local_session

    spark = local_session("stream-latency", cores=1)
    spark.sparkContext.setLogLevel("ERROR")
    rows = spark.read.format("delta").load(str(work / "results")).select("source_key", "batch_id").collect()
    spark.stop()
    latencies = sorted(
        steady_batches[r.batch_id][0] - sent[r.source_key] for r in rows if r.source_key in sent
    )
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"warm-up: {args.warmup} events over {len(warm_batches)} micro-batches, not counted")
    print(f"steady: {len(latencies)} events at {args.rate:g}/s, publish to committed row: "
          f"median {statistics.median(latencies):.2f}s, p95 {p95:.2f}s, max {latencies[-1]:.2f}s "
          f"over {len(steady_batches)} micro-batches")
    last_commit = max(t for t, _ in burst_batches.values())
    print(f"burst: {args.burst} events published at once, all committed after {last_commit - burst_sent:.1f}s: "
          f"{args.burst / (last_commit - burst_sent):.1f} docs/s over {len(burst_batches)} micro-batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
