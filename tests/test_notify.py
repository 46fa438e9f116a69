"""SNS notifications against moto: a backfill's summary, the stream's failure-rate alert, and
that a notification which cannot be sent is logged without stopping the job.

Each test subscribes an SQS queue to a real (moto) topic and reads back what SNS delivered, so
the subject, message and attributes are checked as a subscriber receives them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.sql import functions as F

from tests.conftest import SAMPLES, offline_aws_environment
from thumbs import ledger, notify, stream
from thumbs.backfill import BackfillConfig, BackfillReport, run_backfill
from thumbs.options import RenderOptions
from thumbs.storage import S3Settings, parse_location

REGION = "eu-west-1"
SECRET = "fake-secret-for-notify-tests"
MISSING_TOPIC = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials and a region, nothing from the machine's AWS configuration, moto on."""
    offline_aws_environment(monkeypatch, tmp_path, REGION, secret=SECRET)
    monkeypatch.setattr(logging.getLogger("thumbs"), "propagate", True)  # reach caplog
    with mock_aws():
        yield


class Subscriber:
    """A topic with one SQS queue subscribed (raw delivery off: SNS's JSON envelope)."""

    def __init__(self) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        self.topic_arn = sns.create_topic(Name="thumbs-alerts")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName="thumbs-alerts-inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def received(self) -> list[dict[str, Any]]:
        """Every envelope delivered so far, with `Message` parsed from its JSON."""
        envelopes = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", []):
            for message in batch:
                envelope = json.loads(message["Body"])
                envelope["Message"] = json.loads(envelope["Message"])
                envelopes.append(envelope)
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return envelopes


@pytest.fixture()
def inbox(aws: None) -> Subscriber:
    return Subscriber()


def attributes(envelope: dict[str, Any]) -> dict[str, str]:
    return {name: a["Value"] for name, a in envelope["MessageAttributes"].items()}


def backfill_config(tmp_path: Path, topic_arn: str | None = None) -> BackfillConfig:
    return BackfillConfig(
        source=parse_location(str(SAMPLES)), dest=parse_location(str(tmp_path / "thumbs")),
        table=str(tmp_path / "results"), options=RenderOptions(), s3=S3Settings(),
        sns_topic_arn=topic_arn,
    )


# --- backfill summary ---------------------------------------------------------------------------


def test_a_backfill_summary_arrives_with_counts_subject_and_attributes(
    inbox: Subscriber, tmp_path: Path
) -> None:
    config = backfill_config(tmp_path)
    report = BackfillReport(
        "backfill-test-1", listed=14, not_pdf_skipped=2, already_done=3, to_render=9,
        statuses={"ok": 6, "corrupt": 2, "timeout": 1}, seconds=42.4,
    )
    assert notify.notify_backfill_done(inbox.topic_arn, config, report)

    [envelope] = inbox.received()
    assert envelope["Subject"] == "[thumbs] backfill backfill-test-1: 9 rendered, 3 failed"
    assert attributes(envelope) == {"job": "backfill", "outcome": "failures"}
    body = envelope["Message"]
    assert body["summary"].startswith("backfill backfill-test-1 finished in 42s: 14 listed, 3 ")
    assert "corrupt 2, ok 6, timeout 1" in body["summary"]
    assert body["statuses"] == {"corrupt": 2, "ok": 6, "timeout": 1}
    assert (body["listed"], body["already_done"], body["rendered"], body["failed"]) == (14, 3, 9, 3)
    assert (body["run_id"], body["table"]) == ("backfill-test-1", config.table)
    assert body["source"] == config.source.uri() and body["dest"] == config.dest.uri()


def test_a_clean_backfill_says_ok(inbox: Subscriber, tmp_path: Path) -> None:
    report = BackfillReport("r", listed=2, to_render=2, statuses={"ok": 2})
    assert notify.notify_backfill_done(inbox.topic_arn, backfill_config(tmp_path), report)
    assert [attributes(e)["outcome"] for e in inbox.received()] == ["ok"]


def test_a_real_backfill_reports_the_tables_status_counts(
    spark: Any, inbox: Subscriber, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = backfill_config(tmp_path, inbox.topic_arn)
    with caplog.at_level(logging.INFO, logger="thumbs.notify"):
        report = run_backfill(spark, config)

    [envelope] = inbox.received()
    in_table = ledger.status_counts(spark, config.table, F.col("job_run_id") == report.run_id)
    assert envelope["Message"]["statuses"] == in_table == report.statuses
    assert envelope["Message"]["rendered"] == sum(in_table.values()) == 11
    assert envelope["Message"]["failed"] == 4  # password_required, corrupt, invalid_page, not_pdf
    assert f"notification sent run={report.run_id} batch=-" in caplog.text


# --- stream alert -------------------------------------------------------------------------------


def stream_config(*flags: str) -> stream.StreamConfig:
    args = stream.build_parser().parse_args(["--bootstrap-servers", "kafka:9092", *flags])
    return stream.config_from_args(args)


def outcomes(ok: int, failed: int, status: str = "corrupt") -> list[dict[str, Any]]:
    """Ledger rows as `process_batch` collects them: `ok` rendered, `failed` not."""
    rows = []
    for index in range(ok + failed):
        good = index < ok
        rows.append({
            "action": "render", "status": "ok" if good else status,
            "thumbnails": [{"page": 1, "size": 256}] if good else [],
            "source_uri": f"s3://docs/{index}.pdf", "error_class": None if good else "PdfiumError",
        })
    return rows


@pytest.mark.parametrize(
    ("ok", "failed", "alerts"),
    [(9, 1, 0), (8, 2, 1), (0, 10, 1), (0, 4, 0), (5, 0, 0)],
    ids=["10%-below", "20%-at", "100%-above", "4-documents-below-minimum", "no-failures"],
)
def test_a_batch_alerts_once_when_its_failure_rate_reaches_the_threshold(
    inbox: Subscriber, ok: int, failed: int, alerts: int
) -> None:
    config = stream_config("--sns-topic-arn", inbox.topic_arn)  # defaults: 0.2 and 5 documents
    summary = stream._summarise(outcomes(ok, failed))
    assert stream.alert_failures(config, 7, summary) == bool(alerts)
    assert len(inbox.received()) == alerts


def test_the_alert_names_the_batch_counts_and_failing_documents(inbox: Subscriber) -> None:
    config = stream_config(
        "--sns-topic-arn", inbox.topic_arn, "--alert-failure-rate", "0.5",
        "--alert-min-documents", "10",
    )
    rows = outcomes(10, 25) + outcomes(0, 5, status="timeout")
    assert stream.alert_failures(config, 12, stream._summarise(rows))

    [envelope] = inbox.received()
    assert envelope["Subject"] == "[thumbs] stream batch 12: 30 of 40 documents failed"
    assert attributes(envelope) == {"job": "stream", "outcome": "failure_rate"}
    body = envelope["Message"]
    assert (body["run_id"], body["batch_id"], body["documents"]) == (config.run_id, 12, 40)
    assert body["failures"] == {"corrupt": 25, "timeout": 5} and body["failure_rate"] == 0.75
    assert "30 of 40 documents failed (75%, alert at 50%)" in body["summary"]
    assert len(body["examples"]) == notify.MAX_EXAMPLES == 10
    assert body["examples"][0] == {
        "source_uri": "s3://docs/10.pdf", "status": "corrupt", "error_class": "PdfiumError"
    }


def test_without_a_topic_the_stream_never_alerts() -> None:
    assert not stream.alert_failures(stream_config(), 1, stream._summarise(outcomes(0, 50)))


# --- failures and flags -------------------------------------------------------------------------


def test_a_publish_failure_is_logged_and_not_raised(
    aws: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = BackfillReport("backfill-lost", statuses={"ok": 1})
    summary = stream._summarise(outcomes(0, 10))
    with caplog.at_level(logging.WARNING, logger="thumbs.notify"):
        assert not notify.notify_backfill_done(MISSING_TOPIC, backfill_config(tmp_path), report)
        assert not notify.alert_on_failures(MISSING_TOPIC, "stream-lost", 3, summary, 0.2, 5)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2
    assert lines[0].startswith(
        f"notification not sent run=backfill-lost batch=- topic={MISSING_TOPIC} "
    )
    assert lines[1].startswith("notification not sent run=stream-lost batch=3 ")
    assert "NotFound" in lines[0] and SECRET not in caplog.text


def test_subjects_are_short_printable_ascii() -> None:
    subject = notify.ascii_subject("[thumbs] backfill rün-\n" + "x" * 200)
    assert len(subject) == 100 and subject.isascii() and subject.isprintable()
    assert subject.startswith("[thumbs] backfill r?n-?x")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sns-topic-arn", "thumbs-alerts"], "SNS topic ARN"),
        (["--sns-topic-arn", f"arn:aws:sqs:{REGION}:123456789012:q"], "SNS topic ARN"),
        (["--sns-topic-arn", f"arn:aws:sns:{REGION}:123456789012:t.fifo"], "FIFO"),
        (["--alert-failure-rate", "0"], "alert-failure-rate"),
        (["--alert-failure-rate", "1.5"], "alert-failure-rate"),
        (["--alert-min-documents", "0"], "alert-min-documents"),
    ],
)
def test_bad_notification_flags_are_refused_by_name(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stream_config(*flags)


def test_the_client_publishes_in_the_topics_region(aws: None) -> None:
    client = notify.sns_client("arn:aws:sns:ap-southeast-2:123456789012:t")
    assert client.meta.region_name == "ap-southeast-2"
