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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

from thumbs import ledger
from thumbs.backfill import new_run_id, task_count
from thumbs.events import SEQUENCER_WIDTH, parse_message, s3_notification
from thumbs.logs import configure_logging
from thumbs.spark import tune_for_small_batches
from thumbs.options import FORMATS, Limits, RenderOptions, parse_colour, parse_sizes
from thumbs.pipeline import JobContext, delete_partitions, render_partitions
from thumbs.status import FINAL_STATUSES, Status
from thumbs.storage import Location, S3Settings, parse_location

log = logging.getLogger("thumbs.stream")

LOCAL_S3_ENDPOINT = "http://127.0.0.1:9000"
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


def parse_partitions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
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


def _padded(column: str) -> F.Column:
    return F.lpad(F.coalesce(F.col(column), F.lit("")), SEQUENCER_WIDTH, "0")


def latest_per_object(events: DataFrame) -> DataFrame:
    """One event per (bucket, key): the latest by sequencer, then by Kafka position."""
    order = Window.partitionBy("bucket", "key").orderBy(
        _padded("sequencer").desc(), F.col("partition").desc(), F.col("offset").desc()
    )
    return events.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def drop_already_handled(spark: SparkSession, table: str, events: DataFrame) -> DataFrame:
    """Drop events the ledger already answers: a redelivered version, or an older event."""
    if not ledger.table_exists(spark, table):
        return events
    keys = events.select(F.col("bucket").alias("source_bucket"), F.col("key").alias("source_key"))
    latest = (
        ledger.read(spark, table)
        .select("source_bucket", "source_key", "etag", "action", "status", "sequencer", "processed_at")
        .join(F.broadcast(keys.distinct()), ["source_bucket", "source_key"], "left_semi")
        .withColumn(
            "_rank",
            F.row_number().over(
                Window.partitionBy("source_bucket", "source_key").orderBy(F.col("processed_at").desc())
            ),
        )
        .where("_rank = 1")
        .select(
            F.col("source_bucket").alias("_bucket"),
            F.col("source_key").alias("_key"),
            F.col("etag").alias("_etag"),
            F.col("action").alias("_action"),
            F.col("status").alias("_status"),
            _padded("sequencer").alias("_sequencer"),
        )
    )
    final = sorted(s.value for s in FINAL_STATUSES)
    joined = events.join(
        latest, (events.bucket == latest._bucket) & (events.key == latest._key), "left"
    )
    redelivered = (
        (F.col("kind") == "created")
        & (F.col("_action") == "render")
        & F.col("_status").isin(final)
        & (F.col("_etag") == F.col("etag"))
    )
    already_removed = (F.col("kind") == "removed") & (F.col("_action") == "delete")
    older = F.col("_sequencer") > _padded("sequencer")
    keep = F.col("_bucket").isNull() | ~(redelivered | already_removed | older)
    return joined.where(keep).select(*events.columns)


def _as_refs(events: DataFrame, batch_id: int) -> DataFrame:
    return events.select(
        F.col("bucket").alias("source_bucket"),
        F.col("key").alias("source_key"),
        F.concat(F.lit("s3://"), F.col("bucket"), F.lit("/"), F.col("key")).alias("source_uri"),
        F.col("etag"),
        F.col("version_id"),
        F.col("sequencer"),
        F.col("size").alias("size_bytes"),
        F.col("event_time").alias("last_modified"),
        F.lit(batch_id).cast("long").alias("batch_id"),
    )


def process_batch(spark: SparkSession, config: StreamConfig, batch: DataFrame, batch_id: int) -> None:
    """One micro-batch, from Kafka records to committed ledger rows. Safe to replay."""
    started = time.perf_counter()
    log.info("stream batch start run=%s batch=%d", config.run_id, batch_id)
    records = batch.select("topic", "partition", "offset", "timestamp", "value")
    events = records.mapInPandas(parse_partitions, EVENT_SCHEMA).persist()
    try:
        counts = {r["kind"]: r["count"] for r in events.groupBy("kind").count().collect()}
        _quarantine(spark, config, events.where("kind = 'malformed'"), batch_id, counts)

        objects = events.where(F.col("kind").isin("created", "removed"))
        is_pdf = _pdf_filter(config.pdf_suffixes)
        non_pdf = objects.where(~is_pdf).count() if config.pdf_suffixes else 0
        latest = latest_per_object(objects.where(is_pdf))
        # Materialised before anything is written: the decision of what to render reads the
        # ledger, and must not be re-evaluated against rows this batch has just appended, nor
        # may a lazy re-evaluation render the documents a second time.
        todo = drop_already_handled(spark, config.table, latest).localCheckpoint()
        results = _render_and_delete(spark, config, todo, batch_id).localCheckpoint()
        ledger.ensure_table(spark, config.table)
        ledger.append(results, config.table, txn=(config.app_id, batch_id))
        summary = _summarise(results)
        _dead_letter_transient(config, results, batch_id)
    finally:
        events.unpersist()
    log.info(
        "stream batch done run=%s batch=%d events=%d malformed=%d test_events=%d non_pdf=%d "
        "rendered=%d deleted=%d failures=%s pages=%d seconds=%.1f",
        config.run_id, batch_id, counts.get("created", 0) + counts.get("removed", 0),
        counts.get("malformed", 0), counts.get("test", 0), non_pdf, summary["rendered"],
        summary["deleted"], summary["failures"], summary["pages"], time.perf_counter() - started,
    )


def _pdf_filter(suffixes: tuple[str, ...]) -> F.Column:
    if not suffixes:
        return F.lit(True)
    key = F.lower(F.col("key"))
    condition = F.lit(False)
    for suffix in suffixes:
        condition = condition | key.endswith(suffix.lower())
    return condition


def _render_and_delete(spark: SparkSession, config: StreamConfig, todo: DataFrame, batch_id: int) -> DataFrame:
    ctx = config.context()
    created = _as_refs(todo.where("kind = 'created'"), batch_id)
    removed = _as_refs(todo.where("kind = 'removed'"), batch_id)
    documents = created.count()
    partitions = task_count(documents, spark.sparkContext.defaultParallelism, config.docs_per_task)
    rendered = created.repartition(partitions).mapInPandas(render_partitions(ctx), ledger.RESULT_SCHEMA)
    deleted = removed.mapInPandas(delete_partitions(ctx), ledger.RESULT_SCHEMA)
    return rendered.unionByName(deleted)


def _summarise(results: DataFrame) -> dict[str, Any]:
    rows = results.groupBy("action", "status").agg(
        F.count("*").alias("documents"),
        F.sum(F.size(F.array_distinct(F.col("thumbnails.page")))).alias("pages"),
    ).collect()
    failures = {r["status"]: r["documents"] for r in rows if r["status"] not in ("ok", "deleted")}
    return {
        "rendered": sum(r["documents"] for r in rows if r["action"] == "render"),
        "deleted": sum(r["documents"] for r in rows if r["status"] == "deleted"),
        "failures": failures,
        "pages": sum(r["pages"] or 0 for r in rows),
    }


def _quarantine(
    spark: SparkSession, config: StreamConfig, malformed: DataFrame, batch_id: int, counts: dict[str, int]
) -> None:
    if not counts.get("malformed"):
        return
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


def _dead_letter_transient(config: StreamConfig, results: DataFrame, batch_id: int) -> None:
    """Publish a replayable S3 notification for each document that failed transiently."""
    if not config.dead_letter_topic:
        return
    failed = results.where(F.col("status") == Status.FAILED_TRANSIENT.value).collect()
    if not failed:
        return
    spark = results.sparkSession
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
    parser.add_argument("--dest", default="out/thumbnails", help="s3://bucket/prefix/ or a local folder for thumbnails (default: %(default)s)")
    parser.add_argument("--table", default="out/results", help="the Delta results table (default: %(default)s)")
    parser.add_argument("--checkpoint", default="out/checkpoints/stream", help="the query's checkpoint: Kafka offsets and progress (default: %(default)s)")
    parser.add_argument("--quarantine-table", default="out/quarantine", help="Delta table for malformed messages; 'none' to keep them only in the dead-letter topic (default: %(default)s)")
    parser.add_argument("--dead-letter-topic", help="topic for malformed messages and transient failures (default: TOPIC-dlq; 'none' to disable)")
    parser.add_argument("--trigger", default="10 seconds", help="processing-time interval such as '10s', or 'available-now' to drain the topic and stop (default: %(default)s)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="most Kafka records per micro-batch")
    parser.add_argument("--min-partitions", type=int, help="Spark partitions to read Kafka into, at least (default: one per Kafka partition)")
    parser.add_argument("--starting-offsets", default="earliest", help="where a new checkpoint starts: earliest or latest (default: %(default)s)")
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE", help="passed to Spark's Kafka source and sink unchanged, e.g. kafka.security.protocol=SASL_SSL; repeatable")
    parser.add_argument("--pdf-suffixes", default=".pdf", help="comma-separated key suffixes that are PDFs; others are skipped and counted; empty for all (default: %(default)s)")
    parser.add_argument("--sizes", default="256", help="longest side in pixels, comma-separated for several (default: %(default)s)")
    parser.add_argument("--format", default="webp", choices=sorted(FORMATS), help="thumbnail format (default: %(default)s)")
    parser.add_argument("--quality", type=int, default=80, help="encoder quality for webp and jpeg (default: %(default)s)")
    parser.add_argument("--pages", type=int, default=1, help="leading pages to render per document (default: %(default)s)")
    parser.add_argument("--2x", dest="retina", action="store_true", help="also write @2x thumbnails")
    parser.add_argument("--background", default="#ffffff", help="colour under transparent areas (default: %(default)s)")
    parser.add_argument("--max-source-bytes", type=int, default=Limits.max_source_bytes, help="larger sources end as too_large, checked against the event's size before download (default: %(default)s)")
    parser.add_argument("--timeout-seconds", type=float, default=Limits.timeout_seconds, help="wall-clock limit to render one document (default: %(default)s)")
    parser.add_argument("--max-memory-mb", type=int, default=Limits.memory_bytes >> 20, help="resident memory a render child may reach (default: %(default)s)")
    parser.add_argument("--docs-per-task", type=int, default=64, help="documents per Spark task within a micro-batch (default: %(default)s)")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3; with no --bootstrap-servers, the local server)")
    parser.add_argument("--sse-kms-key-id", help="write thumbnails with SSE-KMS under this key id or ARN")
    parser.add_argument("--in-process", action="store_true", help="render without child processes (debugging only)")
    return parser


def config_from_args(args: argparse.Namespace) -> StreamConfig:
    embedded = args.bootstrap_servers is None
    endpoint = args.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
    if embedded and not endpoint:
        endpoint = LOCAL_S3_ENDPOINT
    options = RenderOptions(
        pages=args.pages,
        sizes=parse_sizes(args.sizes),
        format=args.format,
        quality=args.quality,
        background=parse_colour(args.background),
        densities=(1, 2) if args.retina else (1,),
        limits=Limits(
            max_source_bytes=args.max_source_bytes,
            timeout_seconds=args.timeout_seconds,
            memory_bytes=args.max_memory_mb << 20,
        ),
    )
    kafka_options = {}
    for item in args.kafka_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--kafka-option takes KEY=VALUE, not {item!r}")
        kafka_options[key] = value
    dlq = args.dead_letter_topic or f"{args.topic}-dlq"
    return StreamConfig(
        bootstrap_servers=args.bootstrap_servers or "127.0.0.1:9092",
        topic=args.topic,
        dest=parse_location(args.dest),
        table=_table_path(args.table),
        checkpoint=_table_path(args.checkpoint),
        quarantine_table=None if args.quarantine_table == "none" else _table_path(args.quarantine_table),
        dead_letter_topic=None if dlq == "none" else dlq,
        trigger=args.trigger,
        options=options,
        s3=S3Settings.from_env(endpoint_url=endpoint, sse_kms_key_id=args.sse_kms_key_id),
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        min_partitions=args.min_partitions,
        starting_offsets=args.starting_offsets,
        kafka_options=kafka_options,
        pdf_suffixes=tuple(s.strip() for s in args.pdf_suffixes.split(",") if s.strip()),
        isolate=not args.in_process,
        docs_per_task=args.docs_per_task,
    )


def _table_path(text: str) -> str:
    return text if text.startswith(("s3://", "s3a://")) else str(Path(text).resolve())


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    spark = SparkSession.builder.appName(f"thumbs-{config.run_id}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    tune_for_small_batches(spark)
    spark.streams.addListener(ProgressLogger())
    log.info(
        "stream start run=%s bootstrap=%s topic=%s dest=%s table=%s checkpoint=%s trigger=%s",
        config.run_id, config.bootstrap_servers, config.topic, config.dest.uri(), config.table,
        config.checkpoint, config.trigger,
    )
    query = start(spark, config)
    query.awaitTermination()
    print(f"thumbnails: {config.dest.uri()}")
    print(f"results table: {config.table}")
    spark.stop()
    return 0
