"""CloudWatch metrics for one stream micro-batch (or backfill wave): what an alarm watches.

The "stream batch done" log line says everything, but an operator alarms on metrics, not on
grepped logs. `publish_batch_metrics` sends the same numbers as one `PutMetricData` call:

- `Documents`, `Pages`: documents processed (rendered or deleted) and pages rendered;
- `Failures` with dimension `Status`: one datum per failure class (`timeout`, `corrupt`, ...);
- `Failures` without `Status`: the total, sent even when zero, so an alarm on it always has data;
- `BatchSeconds`: wall time of the batch.

Every datum carries the dimension `Job` (`stream` or `backfill`). The batch id is not a dimension:
each new value would be a new metric, billed per month, that no alarm could ever watch.

The client uses the default credential chain (instance profile on EMR); the role needs
`cloudwatch:PutMetricData` for this namespace only (emr/iam/job-role-policy.json).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger("thumbs.metrics")

MAX_DATUMS_PER_CALL = 1000
"""CloudWatch's limit on metric data per `PutMetricData` request."""


def batch_metric_data(
    job: str,
    documents: int,
    pages: int,
    failures: dict[str, int],
    seconds: float,
    timestamp: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The `MetricData` entries for one batch; raises `ValueError` naming a bad argument."""
    if not job:
        raise ValueError("job must name the job, e.g. 'stream'")
    for name, value in (("documents", documents), ("pages", pages), ("seconds", seconds)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    for status, count in failures.items():
        if not status or count < 0:
            raise ValueError(f"failures must map a status to a count >= 0, got {status!r}: {count}")
    when = timestamp or dt.datetime.now(dt.UTC)
    job_dimension = {"Name": "Job", "Value": job}

    def datum(name: str, value: float, unit: str, *extra: dict[str, str]) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": [job_dimension, *extra],
            "Timestamp": when,
            "Value": float(value),
            "Unit": unit,
        }

    data = [
        datum("Documents", documents, "Count"),
        datum("Pages", pages, "Count"),
        datum("Failures", sum(failures.values()), "Count"),
        datum("BatchSeconds", seconds, "Seconds"),
    ]
    for status in sorted(failures):
        status_dimension = {"Name": "Status", "Value": status}
        data.append(datum("Failures", failures[status], "Count", status_dimension))
    return data


def publish_batch_metrics(
    namespace: str,
    job: str,
    batch_id: int,
    documents: int,
    pages: int,
    failures: dict[str, int],
    seconds: float,
    client: Any = None,
) -> int:
    """Send one batch's metrics to CloudWatch under `namespace`; returns the data points sent.

    `failures` maps each failure status to its count in the batch, as the "stream batch done"
    line prints it. `client` is a boto3 CloudWatch client (one is made from the default
    credential chain when omitted). Errors from CloudWatch propagate: the caller decides whether
    a lost data point may stop a batch (it should not).
    """
    if not namespace or namespace.startswith("AWS/"):
        raise ValueError(f"namespace must be a custom namespace, not {namespace!r}")
    data = batch_metric_data(job, documents, pages, failures, seconds)
    if client is None:
        import boto3

        client = boto3.client("cloudwatch")
    for start in range(0, len(data), MAX_DATUMS_PER_CALL):
        client.put_metric_data(
            Namespace=namespace, MetricData=data[start : start + MAX_DATUMS_PER_CALL]
        )
    log.debug(
        "batch metrics sent namespace=%s job=%s batch=%d datums=%d",
        namespace, job, batch_id, len(data),
    )
    return len(data)
