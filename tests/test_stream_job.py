"""The stream job end to end: a real Kafka broker, the local S3 server, spark-submit.sh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import REPO, S3_ENV, SAMPLES
from thumbs.events import s3_notification
from thumbs.keys import document_prefix
from thumbs.publish import next_sequencer

pytestmark = pytest.mark.heavy

GOOD = (SAMPLES / "sample-files" / "minimal-document.pdf").read_bytes()
OTHER = (SAMPLES / "pdfium" / "rotated_text_90.pdf").read_bytes()


class Uploads:
    """Puts objects on the local S3 server and produces their events to a real topic."""

    def __init__(self, s3: Any, bootstrap: str, topic: str, bucket: str) -> None:
        from confluent_kafka import Producer

        self.s3, self.topic, self.bucket = s3, topic, bucket
        self.producer = Producer({"bootstrap.servers": bootstrap})
        s3.create_bucket(Bucket=bucket)

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"].strip('"')
        return s3_notification(self.bucket, key, etag=etag, size=len(data), sequencer=next_sequencer())

    def send(self, *records: dict[str, Any]) -> None:
        self.raw(json.dumps({"Records": list(records)}).encode())

    def raw(self, value: bytes) -> None:
        self.producer.produce(self.topic, value)
        self.producer.flush(30)


def stream_command(work: Path, bootstrap: str, topic: str, *extra: str) -> list[str]:
    return [
        str(REPO / "spark-submit.sh"), str(REPO / "jobs" / "stream.py"),
        "--bootstrap-servers", bootstrap, "--topic", topic,
        "--dest", str(work / "thumbs"), "--table", str(work / "results"),
        "--checkpoint", str(work / "checkpoint"), "--quarantine-table", str(work / "quarantine"),
        *extra,
    ]


def stream_env(s3_server: str) -> dict[str, str]:
    return {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL_S3": s3_server, "THUMBS_PYTHON": sys.executable}


def run_available_now(work: Path, bootstrap: str, topic: str, s3_server: str, *extra: str) -> str:
    done = subprocess.run(
        stream_command(work, bootstrap, topic, "--trigger", "available-now", *extra),
        env=stream_env(s3_server), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:]
    return "\n".join(line for line in done.stdout.splitlines() if " thumbs." in line)


def latest_rows(spark: Any, table: Path) -> list[Any]:
    return spark.read.format("delta").load(str(table)).collect()


def consume_all(bootstrap: str, topic: str) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages, idle = [], 0
    while idle < 10:
        message = consumer.poll(1.0)
        if message is None or message.error():
            idle += 1
            continue
        messages.append(message)
    consumer.close()
    return messages


def test_every_kind_of_message_with_available_now(
    spark: Any, s3: Any, s3_server: str, kafka: str, tmp_path: Path
) -> None:
    topic = f"uploads-{uuid.uuid4().hex[:8]}"
    uploads = Uploads(s3, kafka, topic, "inbox")
    tricky = ["with space.pdf", "a+b.pdf", "unicodé/文件.pdf", "deep/a/b/c/d/e/f/g.pdf", "to-delete.pdf"]
    records = {key: uploads.put(key, GOOD) for key in tricky}
    uploads.send(*records.values())  # several records in one message
    uploads.send(records["a+b.pdf"])  # a duplicate delivery
    uploads.raw(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "inbox"}).encode())
    first = uploads.put("replaced.pdf", b"%PDF-1.7 broken first version")
    second = uploads.put("replaced.pdf", OTHER)  # several events for one object: latest wins
    uploads.send(second)
    uploads.send(first)
    uploads.send(uploads.put("notes.txt", b"not a pdf"))
    uploads.raw(b"this is not json")
    uploads.raw(b'{"unexpected": "shape"}')
    uploads.raw(b"{" + b" " * (300 << 10) + b"}")

    log = run_available_now(tmp_path, kafka, topic, s3_server)
    assert "malformed=3 test_events=1 non_pdf=1" in log

    rows = {r.source_key: r for r in latest_rows(spark, tmp_path / "results")}
    assert sorted(rows) == sorted([*tricky, "replaced.pdf"]), "one row per object version"
    assert {r.status for r in rows.values()} == {"ok"} and {r.job for r in rows.values()} == {"stream"}
    assert rows["replaced.pdf"].etag == second["s3"]["object"]["eTag"]
    for row in rows.values():
        (thumb,) = row.thumbnails
        assert Image.open(tmp_path / "thumbs" / thumb.key).size == (thumb.width, thumb.height)
    assert rows["unicodé/文件.pdf"].thumbnails[0].key == "inbox/unicod%C3%A9/%E6%96%87%E4%BB%B6.pdf/p1-256.webp"

    quarantined = spark.read.format("delta").load(str(tmp_path / "quarantine")).collect()
    assert sorted(r.reason.split(":")[0] for r in quarantined) == sorted(
        ["not JSON", "neither an S3 event notification nor an EventBridge S3 event", "the message is 307202 bytes, over 262144"]
    )
    assert all(r.topic == topic and r.offset >= 0 and r.value for r in quarantined)
    dead = consume_all(kafka, f"{topic}-dlq")
    assert sorted(m.value()[:8] for m in dead) == sorted([b"this is ", b'{"unexpe', b"{       "])
    assert all(dict(m.headers())["thumbs.reason"] for m in dead)

    # A second run: a removal, a redelivery of an old event, and nothing rendered twice.
    uploads.send(s3_notification("inbox", "to-delete.pdf", event_name="ObjectRemoved:Delete",
                                 sequencer=next_sequencer()))
    uploads.send(records["with space.pdf"])
    log = run_available_now(tmp_path, kafka, topic, s3_server)
    assert "rendered=0 deleted=1" in log, log
    all_rows = latest_rows(spark, tmp_path / "results")
    assert len(all_rows) == len(rows) + 1
    (deleted,) = [r for r in all_rows if r.action == "delete"]
    assert (deleted.source_key, deleted.status) == ("to-delete.pdf", "deleted")
    assert not (tmp_path / "thumbs" / document_prefix("", "inbox", "to-delete.pdf")).exists() or not any(
        (tmp_path / "thumbs" / document_prefix("", "inbox", "to-delete.pdf")).iterdir()
    )


def test_a_killed_driver_resumes_with_exactly_one_row_per_version(
    spark: Any, s3: Any, s3_server: str, kafka: str, tmp_path: Path
) -> None:
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    uploads = Uploads(s3, kafka, topic, "crash")
    keys = [f"batch/{index:03d}.pdf" for index in range(48)]
    for key in keys:
        uploads.send(uploads.put(key, GOOD if len(key) % 2 else OTHER))

    command = stream_command(tmp_path, kafka, topic, "--trigger", "1 second",
                             "--max-offsets-per-trigger", "8", "--docs-per-task", "2")
    log_path = tmp_path / "first-run.log"
    with log_path.open("w") as log_file:
        driver = subprocess.Popen(command, env=stream_env(s3_server), stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(log_path, "stream batch start", occurrences=3, timeout=300)
            time.sleep(1.5)  # into the third batch: rendering, not yet committed
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    committed_before = len(latest_rows(spark, tmp_path / "results"))
    assert committed_before < len(keys), "the kill landed after everything was done"

    run_available_now(tmp_path, kafka, topic, s3_server)
    rows = latest_rows(spark, tmp_path / "results")
    assert sorted(r.source_key for r in rows) == keys, "exactly one row per uploaded version"
    assert {r.status for r in rows} == {"ok"}
    for row in rows:
        assert (tmp_path / "thumbs" / row.thumbnails[0].key).is_file(), row.source_key


def _wait_for(log_path: Path, text: str, occurrences: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count(text) >= occurrences:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear {occurrences} times:\n{log_path.read_text()[-3000:]}")
