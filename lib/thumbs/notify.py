"""SNS notifications: a backfill's closing summary, and an alert when a stream batch fails a lot.

Metrics (`thumbs.metrics`) are what alarms watch; a notification is what a person reads. Each
message is one SNS publish whose body is indented JSON: its `summary` line reads as a sentence
in an email, the rest (run id, counts by status, examples) parses as data. Two message attributes,
`job` (`backfill` or `stream`) and `outcome` (`ok`, `failures` or `failure_rate`), let a
subscription's filter policy pick, say, only the stream's alerts.

The client uses the default credential chain (instance profile on EMR); the role needs
`sns:Publish` on the topic. The region is the topic's own, taken from its ARN; an endpoint for
tests or a local emulator comes from `AWS_ENDPOINT_URL_SNS`, which boto3 reads itself.
Publishing is best effort: a failure is logged as a warning and never stops a job.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thumbs.status import SUCCESS

if TYPE_CHECKING:
    from thumbs.backfill import BackfillConfig, BackfillReport

log = logging.getLogger("thumbs.notify")

MAX_SUBJECT = 100
"""SNS's limit on a subject, which must also be ASCII without line breaks."""

MAX_EXAMPLES = 10
"""Failing documents named in one stream alert; the ledger holds the rest."""

TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:([A-Za-z0-9_-]{1,256})$")
"""A standard topic's ARN; its first group is the region. FIFO topics cannot deliver email."""


@dataclass(frozen=True)
class Notification:
    """One SNS message: subject, body and the attributes a filter policy can match."""

    subject: str
    body: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)

    def message(self) -> str:
        return json.dumps(self.body, indent=2, default=str)


def check_topic_arn(arn: str) -> str:
    """`arn` if it names an SNS topic; raises `ValueError` naming it otherwise.

    A mistyped ARN would only surface as a warning at the end of a long backfill; refusing it
    with the other flags tells the operator before any work is done.
    """
    if arn.endswith(".fifo"):
        raise ValueError(f"--sns-topic-arn must be a standard topic, not a FIFO one: {arn!r}")
    if not TOPIC_ARN.match(arn):
        raise ValueError(f"--sns-topic-arn must be an SNS topic ARN, got {arn!r}")
    return arn


def check_alert_threshold(rate: float, min_documents: int) -> None:
    """Raise `ValueError` naming the flag when the stream's alert threshold makes no sense."""
    if not 0 < rate <= 1:
        raise ValueError(f"--alert-failure-rate must be in (0, 1], got {rate}")
    if min_documents < 1:
        raise ValueError(f"--alert-min-documents must be at least 1, got {min_documents}")


def ascii_subject(text: str) -> str:
    """`text` as an SNS subject: printable ASCII only, at most 100 characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:MAX_SUBJECT]


def failure_count(statuses: dict[str, int]) -> int:
    return sum(n for status, n in statuses.items() if status not in SUCCESS)


def backfill_notification(config: BackfillConfig, report: BackfillReport) -> Notification:
    """The message a finished backfill sends: what was listed, skipped, rendered, and how."""
    failed = failure_count(report.statuses)
    by_status = ", ".join(f"{s} {n}" for s, n in sorted(report.statuses.items()))
    summary = (
        f"backfill {report.run_id} finished in {report.seconds:.0f}s: {report.listed} listed, "
        f"{report.already_done} already done, {report.rendered} rendered, {failed} failed"
        + (f" ({by_status})" if by_status else "")
    )
    body = {
        "summary": summary,
        "job": "backfill",
        "run_id": report.run_id,
        "source": config.source.uri(),
        "dest": config.dest.uri(),
        "table": config.table,
        "listed": report.listed,
        "not_pdf_skipped": report.not_pdf_skipped,
        "already_done": report.already_done,
        "rendered": report.rendered,
        "failed": failed,
        "statuses": dict(sorted(report.statuses.items())),
        "seconds": round(report.seconds, 1),
    }
    outcome = "failures" if failed else "ok"
    subject = f"[thumbs] backfill {report.run_id}: {report.rendered} rendered, {failed} failed"
    return Notification(ascii_subject(subject), body, {"job": "backfill", "outcome": outcome})


def failure_alert(
    run_id: str, batch_id: int, summary: dict[str, Any], rate: float, min_documents: int
) -> Notification | None:
    """The alert for one stream batch, or None when it failed less than `rate` of documents.

    `summary` is the batch summary `stream.process_batch` logs: `documents` processed,
    `failures` by status and `examples` of failing documents. Batches of fewer than
    `min_documents` never alert: one failure out of one document is not worth a page.
    """
    documents = int(summary.get("documents", 0))
    failures: dict[str, int] = summary.get("failures", {})
    failed = sum(failures.values())
    if documents < min_documents or documents == 0 or failed / documents < rate:
        return None
    share = failed / documents
    by_status = ", ".join(f"{s} {n}" for s, n in sorted(failures.items()))
    body = {
        "summary": f"stream {run_id} batch {batch_id}: {failed} of {documents} documents failed "
        f"({share:.0%}, alert at {rate:.0%}): {by_status}",
        "job": "stream",
        "run_id": run_id,
        "batch_id": batch_id,
        "documents": documents,
        "failed": failed,
        "failure_rate": round(share, 4),
        "threshold": rate,
        "failures": dict(sorted(failures.items())),
        "examples": list(summary.get("examples", []))[:MAX_EXAMPLES],
    }
    subject = f"[thumbs] stream batch {batch_id}: {failed} of {documents} documents failed"
    return Notification(ascii_subject(subject), body, {"job": "stream", "outcome": "failure_rate"})


def sns_client(topic_arn: str) -> Any:
    """An SNS client in the topic's region, with short timeouts so a stuck call cannot stall."""
    import boto3
    from botocore.config import Config

    match = TOPIC_ARN.match(topic_arn)
    region = match.group(1) if match else os.environ.get("AWS_REGION") or None
    retries = {"mode": "standard", "max_attempts": 3}
    config = Config(connect_timeout=5, read_timeout=10, retries=retries)
    return boto3.session.Session().client("sns", region_name=region, config=config)


def publish(
    topic_arn: str, note: Notification, run_id: str, batch_id: int | None, client: Any = None
) -> bool:
    """Publish `note` to the topic; True if SNS took it. Errors are logged, never raised.

    A lost notification must not fail a backfill that rendered everything, nor stop a stream:
    the ledger and the metrics still hold the same facts.
    """
    batch = "-" if batch_id is None else batch_id
    try:
        sns = client if client is not None else sns_client(topic_arn)
        answer = sns.publish(
            TopicArn=topic_arn,
            Subject=note.subject,
            Message=note.message(),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in note.attributes.items()
            },
        )
    except Exception as error:  # noqa: BLE001 - notifications are best effort
        log.warning(
            "notification not sent run=%s batch=%s topic=%s error=%r",
            run_id, batch, topic_arn, error,
        )
        return False
    log.info(
        "notification sent run=%s batch=%s topic=%s outcome=%s message_id=%s",
        run_id, batch, topic_arn, note.attributes.get("outcome"), answer.get("MessageId"),
    )
    return True


def notify_backfill_done(
    topic_arn: str, config: BackfillConfig, report: BackfillReport, client: Any = None
) -> bool:
    """Send a finished backfill's summary to the topic; True if SNS took it."""
    return publish(topic_arn, backfill_notification(config, report), report.run_id, None, client)


def alert_on_failures(
    topic_arn: str,
    run_id: str,
    batch_id: int,
    summary: dict[str, Any],
    rate: float,
    min_documents: int,
    client: Any = None,
) -> bool:
    """Alert the topic if this batch's failure rate reached `rate`; True if an alert was sent."""
    note = failure_alert(run_id, batch_id, summary, rate, min_documents)
    return note is not None and publish(topic_arn, note, run_id, batch_id, client)
