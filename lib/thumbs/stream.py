"""The stream: S3 upload events from Kafka to thumbnails and the ledger, exactly once.

Spark's Kafka source keeps the offsets in the checkpoint. Each micro-batch runs `process_batch`
through `foreachBatch`:

1. parse every message into events (`thumbs.events`); malformed messages go to the quarantine
   table (and the dead-letter topic), with their topic, partition, offset and reason;
2. keep PDF objects only (by key suffix), counting the rest; collapse duplicates and several
   events for one object to the latest by `sequencer`;
3. drop versions the ledger already has (a redelivered event) and events older than the
   object's latest row;
4. render created objects with the shared pipeline, delete the thumbnails of removed ones;
5. append all rows to the ledger with Delta's idempotent-write options (`txnAppId` from the
   checkpoint, `txnVersion` = batch id), so a replayed batch commits nothing twice; thumbnail
   keys are deterministic, so its uploads overwrite themselves;
6. publish documents that still failed transiently to the dead-letter topic for replay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.listener import StreamingQueryListener

from thumbs import ledger
from thumbs.backfill import new_run_id, register_catalog_table, task_count
from thumbs.cli import add_shared_arguments, optional, render_options, s3_settings, table_path
from thumbs.events import parse_message, s3_notification, sequencer_order
from thumbs.logs import configure_logging
from thumbs.metrics import publish_batch_metrics
from thumbs.notify import MAX_EXAMPLES, alert_on_failures, check_alert_threshold, check_topic_arn
from thumbs.options import RenderOptions
from thumbs.pipeline import JobContext, delete_partitions, render_partitions
from thumbs.spark import job_session
from thumbs.status import FINAL_STATUSES, SUCCESS, Status
from thumbs.storage import Location, S3Settings, parse_location

log = logging.getLogger("thumbs.stream")

LOCAL_S3_ENDPOINT = "http://127.0.0.1:9000"
HISTORY_CHUNK = 5000
"""Keys per ledger lookup; Spark turns a list this long into a hash-set filter."""
"""The local S3-compatible server `scripts/services.sh` starts, used by the embedded default."""

EVENT_SCHEMA = T.StructType(
    [
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("kind", T.StringType()),
        T.StructField("event_name", T.StringType()),
        T.StructField("bucket", T.StringType()),
        T.StructField("key", T.StringType()),
        T.StructField("etag", T.StringType()),
        T.StructField("size", T.LongType()),
        T.StructField("version_id", T.StringType()),
        T.StructField("sequencer", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("reason", T.StringType()),
        T.StructField("value", T.BinaryType()),
    ]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("topic", T.StringType(), False),
        T.StructField("partition", T.IntegerType(), False),
        T.StructField("offset", T.LongType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), True),
        T.StructField("reason", T.StringType(), False),
        T.StructField("value", T.BinaryType(), True),
        T.StructField("job_run_id", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("quarantined_at", T.TimestampType(), False),
    ]
)
"""Malformed messages: where they came from, why they were refused, and their bytes."""


@dataclass
class StreamConfig:
    bootstrap_servers: str
    topic: str
    dest: Location
    table: str
    checkpoint: str
    quarantine_table: str | None
    dead_letter_topic: str | None
    trigger: str
    options: RenderOptions
    s3: S3Settings
    max_offsets_per_trigger: int | None = None
    min_partitions: int | None = None
    starting_offsets: str = "earliest"
    kafka_options: dict[str, str] = field(default_factory=dict)
    pdf_suffixes: tuple[str, ...] = (".pdf",)
    isolate: bool = True
    io_threads: int = 8
    docs_per_task: int = 64
    cloudwatch_namespace: str | None = None
    sns_topic_arn: str | None = None
    alert_failure_rate: float = 0.2
    alert_min_documents: int = 5
    catalog_table: str | None = None
    run_id: str = field(default_factory=lambda: new_run_id("stream"))

    @property
    def app_id(self) -> str:
        """Delta's transaction id for this query: stable across restarts of one checkpoint."""
        digest = hashlib.sha256(self.checkpoint.encode()).hexdigest()[:16]
        return f"thumbs-stream-{digest}"

    def context(self) -> JobContext:
        return JobContext(
            self.options, self.dest, self.s3, "stream", self.run_id,
            isolate=self.isolate, io_threads=self.io_threads,
        )


def parse_partitions(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """`mapInPandas`: Kafka records in, one row per event (or per malformed message) out."""
    for batch in batches:
        rows = []
        for record in batch.to_dict("records"):
            value = record["value"]
            for event in parse_message(None if value is None else bytes(value)):
                rows.append(
                    {
                        "topic": record["topic"],
                        "partition": record["partition"],
                        "offset": record["offset"],
                        "kafka_timestamp": record["timestamp"],
                        "kind": event.kind,
                        "event_name": event.event_name,
                        "bucket": event.bucket,
                        "key": event.key,
                        "etag": event.etag,
                        "size": event.size,
                        "version_id": event.version_id,
                        "sequencer": event.sequencer,
                        "event_time": event.event_time,
                        "reason": event.reason,
                        "value": None if event.kind != "malformed" else value,
                    }
                )
        yield pd.DataFrame(rows, columns=EVENT_SCHEMA.fieldNames())


def latest_per_object(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per (bucket, key): the latest by sequencer, then by Kafka position."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        object_id = (event["bucket"], event["key"])
        current = latest.get(object_id)
        if current is None or _position(event) > _position(current):
            latest[object_id] = event
    return list(latest.values())


def _position(event: dict[str, Any]) -> tuple[str, int, int]:
    return (sequencer_order(event["sequencer"]), event["partition"], event["offset"])


def still_to_do(events: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop events the ledger already answers: a redelivered version, or an older event.

    `history` holds ledger rows for the same objects; only each object's most recent row counts.
    """
    final = {s.value for s in FINAL_STATUSES}
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in history:
        object_id = (row["source_bucket"], row["source_key"])
        if object_id not in newest or row["processed_at"] > newest[object_id]["processed_at"]:
            newest[object_id] = row
    kept = []
    for event in events:
        latest = newest.get((event["bucket"], event["key"]))
        if latest is not None:
            row = latest
            if sequencer_order(row["sequencer"]) > sequencer_order(event["sequencer"]):
                continue  # an older event than what the ledger already reflects
            if event["kind"] == "created" and row["action"] == "render" and row["status"] in final and row["etag"] == event["etag"]:
                continue  # this version is done: a redelivery
            if event["kind"] == "removed" and row["action"] == "delete":
                continue  # already removed
        kept.append(event)
    return kept


def ledger_history(spark: SparkSession, table: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger rows of the objects these events name (a filtered read, no shuffle)."""
    keys = sorted({event["key"] for event in events})
    rows: list[dict[str, Any]] = []
    columns = ["source_bucket", "source_key", "etag", "action", "status", "sequencer", "processed_at"]
    for start in range(0, len(keys), HISTORY_CHUNK):
        chunk = keys[start : start + HISTORY_CHUNK]
        found = ledger.read(spark, table).where(F.col("source_key").isin(chunk)).select(*columns)
        rows.extend(row.asDict() for row in found.collect())
    return rows


def process_batch(spark: SparkSession, config: StreamConfig, batch: DataFrame, batch_id: int) -> None:
    """One micro-batch, from Kafka records to committed ledger rows. Safe to replay.

    Each step's result is on the driver before the next step starts: the decision of what to
    render reads the ledger and must not be re-evaluated after this batch appends to it, and a
    lazy re-evaluation must never render a document twice. A batch's events (without their
    message bytes) and result rows fit the driver; bound them with `--max-offsets-per-trigger`.
    """
    started = time.perf_counter()
    log.info("stream batch start run=%s batch=%d", config.run_id, batch_id)
    records = batch.select("topic", "partition", "offset", "timestamp", "value")
    # Cached, not checkpointed: parsing is deterministic, so a recomputation (if the cache is
    # evicted before the quarantine reads it) is harmless, and this saves a Spark job per batch.
    events = (
        records.mapInPandas(parse_partitions, EVENT_SCHEMA)
        .withColumn("is_pdf", _pdf_filter(config.pdf_suffixes))
        .persist()
    )
    try:
        parsed = [row.asDict() for row in events.drop("value").collect()]
        steps = {"parse": time.perf_counter() - started}
        counts: dict[str, int] = {}
        for row in parsed:
            counts[row["kind"]] = counts.get(row["kind"], 0) + 1
        if counts.get("malformed"):
            _quarantine(spark, config, events.where("kind = 'malformed'"), batch_id)
    finally:
        events.unpersist()
    objects = [row for row in parsed if row["kind"] in ("created", "removed")]
    non_pdf = sum(1 for row in objects if not row["is_pdf"])
    latest = latest_per_object([row for row in objects if row["is_pdf"]])
    steps["count"] = time.perf_counter() - started
    todo = still_to_do(latest, ledger_history(spark, config.table, latest)) if latest else []
    steps["plan"] = time.perf_counter() - started
    summary: dict[str, Any] = {
        "documents": 0, "rendered": 0, "deleted": 0, "failures": {}, "pages": 0, "examples": [],
    }
    if todo:
        # The rows come to the driver once, then go to the ledger from there: one Spark job renders,
        # and nothing downstream can make it run again.
        outcomes = _render_and_delete(spark, config, todo, batch_id).collect()
        steps["render"] = time.perf_counter() - started
        results = spark.createDataFrame(outcomes, ledger.RESULT_SCHEMA)
        ledger.append(results, config.table, txn=(config.app_id, batch_id))
        steps["commit"] = time.perf_counter() - started
        summary = _summarise(outcomes)
        _dead_letter_transient(spark, config, outcomes, batch_id)
    seconds = time.perf_counter() - started
    if config.cloudwatch_namespace:
        _publish_metrics(config, batch_id, summary, seconds)
    if config.sns_topic_arn:
        alert_failures(config, batch_id, summary)
    log.debug("stream batch steps run=%s batch=%d seconds_since_start=%s", config.run_id, batch_id,
              {name: round(seconds, 2) for name, seconds in steps.items()})
    log.info(
        "stream batch done run=%s batch=%d events=%d malformed=%d test_events=%d non_pdf=%d "
        "rendered=%d deleted=%d failures=%s pages=%d seconds=%.1f",
        config.run_id, batch_id, counts.get("created", 0) + counts.get("removed", 0),
        counts.get("malformed", 0), counts.get("test", 0), non_pdf, summary["rendered"],
        summary["deleted"], summary["failures"], summary["pages"], seconds,
    )


def _publish_metrics(config: StreamConfig, batch_id: int, summary: dict[str, Any], seconds: float) -> None:
    """Batch metrics to CloudWatch; a lost data point is logged, never allowed to stop the stream."""
    try:
        publish_batch_metrics(
            config.cloudwatch_namespace or "", "stream", batch_id,
            summary["rendered"] + summary["deleted"], summary["pages"], summary["failures"], seconds,
        )
    except Exception as error:  # noqa: BLE001 - metrics are best effort
        log.warning("batch metrics not sent run=%s batch=%d error=%r", config.run_id, batch_id, error)


def alert_failures(config: StreamConfig, batch_id: int, summary: dict[str, Any]) -> bool:
    """Alert the SNS topic when this batch's failure rate reached the threshold; True if sent.

    Called after the batch committed, like the metrics: an alert that cannot be sent is logged
    and the stream goes on, because the ledger already records every failure it would name.
    """
    if not config.sns_topic_arn:
        return False
    return alert_on_failures(
        config.sns_topic_arn, config.run_id, batch_id, summary,
        config.alert_failure_rate, config.alert_min_documents,
    )


def _pdf_filter(suffixes: tuple[str, ...]) -> Column:
    if not suffixes:
        return F.lit(True)
    key = F.lower(F.col("key"))
    condition = F.lit(False)
    for suffix in suffixes:
        condition = condition | key.endswith(suffix.lower())
    return condition


def _render_and_delete(spark: SparkSession, config: StreamConfig, todo: list[Any], batch_id: int) -> DataFrame:
    ctx = config.context()
    created = [_ref_row(event, batch_id) for event in todo if event["kind"] == "created"]
    removed = [_ref_row(event, batch_id) for event in todo if event["kind"] == "removed"]
    partitions = task_count(len(created), spark.sparkContext.defaultParallelism, config.docs_per_task)
    references = spark.sparkContext.parallelize(created, partitions)  # spread without a shuffle
    rendered = spark.createDataFrame(references, ledger.REF_SCHEMA).mapInPandas(
        render_partitions(ctx), ledger.RESULT_SCHEMA
    )
    deleted = spark.createDataFrame(removed, ledger.REF_SCHEMA).mapInPandas(
        delete_partitions(ctx), ledger.RESULT_SCHEMA
    )
    return rendered.unionByName(deleted)


def _ref_row(event: Any, batch_id: int) -> tuple[Any, ...]:
    """A document reference (in `ledger.REF_SCHEMA` order) for one object event."""
    return (
        event["bucket"], event["key"], f"s3://{event['bucket']}/{event['key']}", event["etag"],
        event["version_id"], event["sequencer"], event["size"], event["event_time"], batch_id,
    )


def _summarise(outcomes: list[Any]) -> dict[str, Any]:
    """Counts for the batch's log line, metrics and alert, and a few failing documents by name."""
    failures: dict[str, int] = {}
    examples: list[dict[str, str]] = []
    for row in outcomes:
        if row["status"] not in SUCCESS:
            failures[row["status"]] = failures.get(row["status"], 0) + 1
            if len(examples) < MAX_EXAMPLES:
                examples.append({
                    "source_uri": row["source_uri"], "status": row["status"],
                    "error_class": row["error_class"] or row["status"],
                })
    return {
        "documents": len(outcomes),
        "rendered": sum(1 for row in outcomes if row["action"] == "render"),
        "deleted": sum(1 for row in outcomes if row["status"] == Status.DELETED.value),
        "failures": failures,
        "pages": sum(len({thumbnail["page"] for thumbnail in row["thumbnails"] or ()}) for row in outcomes),
        "examples": examples,
    }


def _quarantine(spark: SparkSession, config: StreamConfig, malformed: DataFrame, batch_id: int) -> None:
    rows = malformed.select(
        "topic", "partition", "offset", "kafka_timestamp", "reason", "value",
        F.lit(config.run_id).alias("job_run_id"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.current_timestamp().alias("quarantined_at"),
    )
    for row in rows.select("topic", "partition", "offset", "reason").collect():
        log.warning(
            "message quarantined run=%s batch=%d topic=%s partition=%d offset=%d reason=%s",
            config.run_id, batch_id, row["topic"], row["partition"], row["offset"], row["reason"],
        )
    if config.quarantine_table:
        spark.createDataFrame([], QUARANTINE_SCHEMA)  # schema check before the first write
        ledger.append(rows, config.quarantine_table, txn=(config.app_id + "-quarantine", batch_id))
    if config.dead_letter_topic:
        headers = F.array(
            F.struct(F.lit("thumbs.reason").alias("key"), F.col("reason").cast("binary").alias("value")),
            F.struct(F.lit("thumbs.source").alias("key"), F.format_string(
                "%s/%d/%d", "topic", "partition", "offset").cast("binary").alias("value")),
        )
        _publish(config, rows.select(F.col("value"), headers.alias("headers")))


def _dead_letter_transient(spark: SparkSession, config: StreamConfig, outcomes: list[Any], batch_id: int) -> None:
    """Publish a replayable S3 notification for each document that failed transiently."""
    failed = [row for row in outcomes if row["status"] == Status.FAILED_TRANSIENT.value]
    if not config.dead_letter_topic or not failed:
        return
    messages = [
        (
            json.dumps(
                {
                    "Records": [
                        s3_notification(
                            r["source_bucket"], r["source_key"], etag=r["etag"], size=r["size_bytes"],
                            sequencer=r["sequencer"], version_id=r["version_id"],
                        )
                    ],
                    "thumbs": {"reason": r["error_message"], "batch_id": batch_id},
                }
            ).encode(),
        )
        for r in failed
    ]
    frame = spark.createDataFrame(messages, "value binary")
    _publish(config, frame)
    log.warning("dead-lettered run=%s batch=%d documents=%d", config.run_id, batch_id, len(failed))


def _publish(config: StreamConfig, frame: DataFrame) -> None:
    writer = frame.write.format("kafka").option("kafka.bootstrap.servers", config.bootstrap_servers)
    for key, value in config.kafka_options.items():
        writer = writer.option(key, value)
    writer.option("topic", config.dead_letter_topic).option("includeHeaders", "true").save()


class ProgressLogger(StreamingQueryListener):
    """One line per query progress report, with the rates Spark measured."""

    def onQueryStarted(self, event: Any) -> None:
        log.info("stream query started id=%s name=%s", event.id, event.name)

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        log.info(
            "stream progress batch=%d input_rows=%d input_rows_per_s=%.1f processed_rows_per_s=%.1f "
            "trigger_ms=%s",
            progress.batchId, progress.numInputRows, progress.inputRowsPerSecond or 0.0,
            progress.processedRowsPerSecond or 0.0, progress.durationMs.get("triggerExecution"),
        )

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        log.info("stream query terminated id=%s exception=%s", event.id, event.exception)


def start(spark: SparkSession, config: StreamConfig):  # type: ignore[no-untyped-def]
    """Start the query; returns the `StreamingQuery`."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.bootstrap_servers)
        .option("subscribe", config.topic)
        .option("startingOffsets", config.starting_offsets)
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    if config.min_partitions:
        reader = reader.option("minPartitions", config.min_partitions)
    for key, value in config.kafka_options.items():
        reader = reader.option(key, value)
    writer = (
        reader.load()
        .writeStream.queryName("thumbs-stream")
        .option("checkpointLocation", config.checkpoint)
        .foreachBatch(lambda batch, batch_id: process_batch(spark, config, batch, batch_id))
    )
    if config.trigger == "available-now":
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=config.trigger)
    return writer.start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream.py",
        description="Render thumbnails for S3 upload events read from Kafka, recording one row per "
        "document version in the Delta results table, exactly once. With no arguments, reads the "
        "local broker and S3 server that scripts/services.sh starts.",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (default: the local broker, 127.0.0.1:9092)")
    parser.add_argument("--topic", default="pdf-uploads", help="topic of S3 event notifications or EventBridge events (default: %(default)s)")
    add_shared_arguments(parser)
    parser.add_argument("--checkpoint", default="out/checkpoints/stream", help="the query's checkpoint: Kafka offsets and progress (default: %(default)s)")
    parser.add_argument("--quarantine-table", default="out/quarantine", help="Delta table for malformed messages; 'none' to keep them only in the dead-letter topic (default: %(default)s)")
    parser.add_argument("--dead-letter-topic", help="topic for malformed messages and transient failures (default: TOPIC-dlq; 'none' to disable)")
    parser.add_argument("--trigger", default="10 seconds", help="processing-time interval such as '10s', or 'available-now' to drain the topic and stop (default: %(default)s)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="most Kafka records per micro-batch")
    parser.add_argument("--min-partitions", type=int, help="Spark partitions to read Kafka into, at least (default: one per Kafka partition)")
    parser.add_argument("--starting-offsets", default="earliest", help="where a new checkpoint starts: earliest or latest (default: %(default)s)")
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE", help="passed to Spark's Kafka source and sink unchanged, e.g. kafka.security.protocol=SASL_SSL; repeatable")
    parser.add_argument("--cloudwatch-namespace", help="publish each batch's documents, pages, failures by class and duration to CloudWatch under this namespace")
    parser.add_argument("--sns-topic-arn", metavar="ARN", help="SNS topic to alert when a micro-batch's failure rate reaches --alert-failure-rate (a standard topic in any region)")
    parser.add_argument("--alert-failure-rate", type=float, metavar="FRACTION", default=0.2, help="share of a batch's documents that failed (any status but ok and deleted) at which to alert (default: %(default)s)")
    parser.add_argument("--alert-min-documents", type=int, metavar="N", default=5, help="smallest batch that may alert, so one failure out of one document does not page anyone (default: %(default)s)")
    parser.add_argument("--pdf-suffixes", default=".pdf", help="comma-separated key suffixes that are PDFs; others are skipped and counted; empty for all (default: %(default)s)")
    parser.add_argument("--docs-per-task", type=int, default=64, help="documents per Spark task within a micro-batch (default: %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> StreamConfig:
    embedded = args.bootstrap_servers is None
    endpoint = args.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
    if embedded and not endpoint:
        endpoint = LOCAL_S3_ENDPOINT
    kafka_options = {}
    for item in args.kafka_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--kafka-option takes KEY=VALUE, not {item!r}")
        kafka_options[key] = value
    dlq = args.dead_letter_topic or f"{args.topic}-dlq"
    check_alert_threshold(args.alert_failure_rate, args.alert_min_documents)
    return StreamConfig(
        bootstrap_servers=args.bootstrap_servers or "127.0.0.1:9092",
        topic=args.topic,
        dest=parse_location(args.dest),
        table=table_path(args.table),
        checkpoint=table_path(args.checkpoint),
        quarantine_table=None if args.quarantine_table == "none" else table_path(args.quarantine_table),
        dead_letter_topic=None if dlq == "none" else dlq,
        trigger=args.trigger,
        options=render_options(args),
        s3=s3_settings(args, endpoint),
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        min_partitions=args.min_partitions,
        starting_offsets=args.starting_offsets,
        kafka_options=kafka_options,
        pdf_suffixes=tuple(s.strip() for s in args.pdf_suffixes.split(",") if s.strip()),
        isolate=not args.in_process,
        io_threads=args.io_threads,
        docs_per_task=args.docs_per_task,
        cloudwatch_namespace=args.cloudwatch_namespace,
        sns_topic_arn=optional(check_topic_arn, args.sns_topic_arn),
        alert_failure_rate=args.alert_failure_rate,
        alert_min_documents=args.alert_min_documents,
        catalog_table=optional(ledger.check_table_name, args.catalog_table),
    )


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    spark = job_session(config.run_id)
    spark.streams.addListener(ProgressLogger())
    log.info(
        "stream start run=%s bootstrap=%s topic=%s dest=%s table=%s checkpoint=%s trigger=%s",
        config.run_id, config.bootstrap_servers, config.topic, config.dest.uri(), config.table,
        config.checkpoint, config.trigger,
    )
    ledger.ensure_table(spark, config.table)
    if config.catalog_table:
        register_catalog_table(spark, config.run_id, config.catalog_table, config.table)
    query = start(spark, config)
    query.awaitTermination()
    print(f"thumbnails: {config.dest.uri()}")
    print(f"results table: {config.table}")
    spark.stop()
    return 0
