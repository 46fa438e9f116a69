"""Backfill: render every PDF under a bucket prefix or folder, skipping versions already done.

The driver lists the source page by page and works through it in waves of document references.
Each wave drops the versions the ledger already has, spreads the rest across executors, renders
them with the shared pipeline and appends the rows to the ledger, then logs a progress line. An
interrupted run loses at most the wave in flight; running again resumes from the ledger.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import math
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from thumbs import ledger
from thumbs.cli import add_shared_arguments, optional, render_options, s3_settings, table_path
from thumbs.logs import configure_logging
from thumbs.notify import check_topic_arn, notify_backfill_done
from thumbs.options import ALL_PAGES, RenderOptions
from thumbs.pipeline import JobContext, render_partitions
from thumbs.spark import job_session
from thumbs.storage import Location, ObjectRef, S3Settings, list_objects, parse_location

log = logging.getLogger("thumbs.backfill")

SAMPLES = Path(__file__).resolve().parent / "samples"
"""The small bundled sample set the embedded default renders."""

BYTES_PER_PIXEL = {"webp": 0.12, "jpeg": 0.2, "png": 0.9}
"""Rough encoded size per pixel, for `--dry-run` estimates when the ledger has no history."""

PAGE_AREA = 1 / math.sqrt(2)
"""Share of a size-by-size square an A-series page covers; most documents are near that shape."""


@dataclass
class BackfillConfig:
    source: Location
    dest: Location
    table: str
    options: RenderOptions
    s3: S3Settings
    limit: int | None = None
    since: dt.datetime | None = None
    dry_run: bool = False
    all_objects: bool = False
    retry_failed: bool = False
    wave_size: int = 50_000
    docs_per_task: int = 256
    isolate: bool = True
    io_threads: int = 8
    sns_topic_arn: str | None = None
    catalog_table: str | None = None
    run_id: str = field(default_factory=lambda: new_run_id("backfill"))


@dataclass
class BackfillReport:
    """What a run did, for the closing log line and for tests."""

    run_id: str
    listed: int = 0
    not_pdf_skipped: int = 0
    already_done: int = 0
    to_render: int = 0
    source_bytes: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rendered(self) -> int:
        return sum(self.statuses.values())


def new_run_id(job: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{job}-{stamp}-{uuid.uuid4().hex[:8]}"


def run_backfill(spark: SparkSession, config: BackfillConfig) -> BackfillReport:
    """List, skip what is done, render the rest wave by wave, and return the totals."""
    started = time.perf_counter()
    report = BackfillReport(config.run_id)
    if not config.dry_run:
        ledger.ensure_table(spark, config.table)
        if config.catalog_table:
            register_catalog_table(spark, config.run_id, config.catalog_table, config.table)
    done = ledger.done_versions(spark, config.table, retry_failed=config.retry_failed).cache()
    context = JobContext(
        config.options, config.dest, config.s3, "backfill", config.run_id,
        isolate=config.isolate, io_threads=config.io_threads,
    )
    log.info(
        "backfill start run=%s source=%s dest=%s table=%s dry_run=%s",
        config.run_id, config.source.uri(), config.dest.uri(), config.table, config.dry_run,
    )
    refs = _pdf_refs(list_objects(config.source, config.s3, since=config.since), config, report)
    for wave_id, wave in enumerate(_chunks(refs, config.wave_size)):
        remaining = None if config.limit is None else config.limit - report.to_render
        if remaining is not None and remaining <= 0:
            break
        _run_wave(spark, config, context, done, wave_id, wave, remaining, report)
    done.unpersist()
    report.seconds = time.perf_counter() - started
    _log_summary(config, report)
    if config.sns_topic_arn and not config.dry_run:
        notify_backfill_done(config.sns_topic_arn, config, report)
    return report


def register_catalog_table(spark: SparkSession, run_id: str, name: str, path: str) -> None:
    """Name the results table in the catalog, and say so; warn if the name points elsewhere.

    `CREATE TABLE IF NOT EXISTS` keeps an older registration, so a name reused for another
    table would silently answer queries from that table; the warning makes that visible.
    """
    location = ledger.register_table(spark, name, path)
    if ledger.same_location(location, path):
        log.info("catalog table registered run=%s name=%s location=%s", run_id, name, location)
    else:
        log.warning(
            "catalog table points elsewhere run=%s name=%s catalog_location=%s table=%s",
            run_id, name, location, path,
        )


def _pdf_refs(refs: Iterable[ObjectRef], config: BackfillConfig, report: BackfillReport) -> Iterator[ObjectRef]:
    for ref in refs:
        report.listed += 1
        if config.all_objects or ref.key.lower().endswith(".pdf"):
            yield ref
        else:
            report.not_pdf_skipped += 1


def _chunks(refs: Iterator[ObjectRef], size: int) -> Iterator[list[ObjectRef]]:
    while chunk := list(itertools.islice(refs, size)):
        yield chunk


def _run_wave(
    spark: SparkSession,
    config: BackfillConfig,
    context: JobContext,
    done: DataFrame,
    wave_id: int,
    wave: list[ObjectRef],
    remaining: int | None,
    report: BackfillReport,
) -> None:
    wave_start = time.perf_counter()
    todo = _refs_frame(spark, wave, wave_id).join(done, ledger.VERSION_KEY, "left_anti").localCheckpoint()
    count = todo.count()
    report.already_done += len(wave) - count
    if remaining is not None and count > remaining:
        todo, count = todo.limit(remaining).localCheckpoint(), remaining
    size = todo.agg(F.coalesce(F.sum("size_bytes"), F.lit(0))).first()[0]  # type: ignore[index]
    report.to_render += count
    report.source_bytes += size
    if count == 0 or config.dry_run:
        log.info("backfill wave run=%s batch=%d listed=%d to_render=%d", config.run_id, wave_id, len(wave), count)
        return
    partitions = task_count(count, spark.sparkContext.defaultParallelism, config.docs_per_task)
    results = todo.repartition(partitions).mapInPandas(render_partitions(context), ledger.RESULT_SCHEMA)
    ledger.append(results, config.table)
    counts = ledger.status_counts(
        spark, config.table, (F.col("job_run_id") == config.run_id) & (F.col("batch_id") == wave_id)
    )
    for status, n in counts.items():
        report.statuses[status] = report.statuses.get(status, 0) + n
    seconds = time.perf_counter() - wave_start
    log.info(
        "backfill wave run=%s batch=%d listed=%d rendered=%d statuses=%s seconds=%.1f docs_per_s=%.1f",
        config.run_id, wave_id, len(wave), count, counts, seconds, count / max(seconds, 1e-9),
    )


def task_count(documents: int, cores: int, docs_per_task: int) -> int:
    """Tasks for a wave: about `docs_per_task` each, but at least two per core while documents last.

    Large tasks amortise Spark's per-task cost (a few tenths of a second); two tasks per core
    keep every core busy when a wave is small or one task draws the slow documents.
    """
    return max(1, min(documents, max(2 * cores, math.ceil(documents / docs_per_task))))


def _refs_frame(spark: SparkSession, wave: list[ObjectRef], wave_id: int) -> DataFrame:
    frame = pd.DataFrame(
        {
            "source_bucket": [r.bucket for r in wave],
            "source_key": [r.key for r in wave],
            "source_uri": [r.uri for r in wave],
            "etag": [r.etag for r in wave],
            "version_id": [r.version_id for r in wave],
            "sequencer": [None] * len(wave),
            "size_bytes": [r.size for r in wave],
            "last_modified": pd.to_datetime(pd.Series([r.last_modified for r in wave]), utc=True),
            "batch_id": [wave_id] * len(wave),
        }
    )
    return spark.createDataFrame(frame, ledger.REF_SCHEMA)


def estimate_thumbnail_bytes(documents: int, options: RenderOptions) -> int:
    """A rough figure for `--dry-run`: documents x pages x sizes x pixels x bytes per pixel."""
    pages = 10 if options.pages == ALL_PAGES else options.pages
    pixels = sum((size * density) ** 2 * PAGE_AREA for size, density in options.targets())
    return int(documents * pages * pixels * BYTES_PER_PIXEL[options.format])


def _log_summary(config: BackfillConfig, report: BackfillReport) -> None:
    if config.dry_run:
        estimate = estimate_thumbnail_bytes(report.to_render, config.options)
        print(
            f"dry run: {report.listed} objects listed, {report.not_pdf_skipped} without a .pdf name, "
            f"{report.already_done} already done, {report.to_render} to render "
            f"({report.source_bytes} source bytes, about {estimate} thumbnail bytes to write)"
        )
        return
    rate = report.rendered / max(report.seconds, 1e-9)
    log.info(
        "backfill done run=%s listed=%d skipped_non_pdf_keys=%d already_done=%d rendered=%d statuses=%s "
        "seconds=%.1f docs_per_s=%.2f",
        report.run_id, report.listed, report.not_pdf_skipped, report.already_done, report.rendered,
        report.statuses, report.seconds, rate,
    )
    print(f"thumbnails: {config.dest.uri()}")
    print(f"results table: {config.table}  ({report.rendered} rows written, {report.statuses})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backfill.py",
        description="Render thumbnails for every PDF under a bucket prefix or folder, and record "
        "one row per document in the Delta results table. Versions already done are skipped. "
        "With no arguments, renders the bundled samples into ./out/.",
    )
    parser.add_argument("--source", help="s3://bucket/prefix/ or a local folder (default: bundled samples)")
    add_shared_arguments(parser)
    parser.add_argument("--limit", type=int, help="render at most this many documents in this run")
    parser.add_argument("--since", type=_parse_date, help="only objects modified after this date or time (ISO 8601, UTC if no zone)")
    parser.add_argument("--dry-run", action="store_true", help="list and count what would be rendered, render nothing")
    parser.add_argument("--all-objects", action="store_true", help="consider every object, not only keys ending in .pdf (others end as not_pdf)")
    parser.add_argument("--retry-failed", action="store_true", help="render again versions whose earlier row is a permanent failure")
    parser.add_argument("--wave-size", type=int, default=50_000, help="documents listed per wave, the unit of progress and of resumption (default: %(default)s)")
    parser.add_argument("--docs-per-task", type=int, default=256, help="documents per Spark task, fewer when a wave would not fill every core twice (default: %(default)s)")
    parser.add_argument("--run-id", help="identifier recorded in job_run_id (default: generated)")
    parser.add_argument("--sns-topic-arn", metavar="ARN", help="SNS topic to send the run's summary to when it finishes: counts by status, run id, source, table (a standard topic in any region)")
    parser.add_argument("--validate", metavar="REPORT", help="after the run, check the whole table with the data-quality suite (jobs/validate.py), write its result under this folder or s3:// prefix, and exit 1 if a rule fails")
    return parser


def _parse_date(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def config_from_args(args: argparse.Namespace) -> BackfillConfig:
    options = render_options(args)
    s3 = s3_settings(args)
    table = table_path(args.table)
    config = BackfillConfig(
        source=parse_location(args.source or str(SAMPLES)),
        dest=parse_location(args.dest),
        table=table,
        options=options,
        s3=s3,
        limit=args.limit,
        since=args.since,
        dry_run=args.dry_run,
        all_objects=args.all_objects,
        retry_failed=args.retry_failed,
        wave_size=args.wave_size,
        docs_per_task=args.docs_per_task,
        isolate=not args.in_process,
        io_threads=args.io_threads,
        sns_topic_arn=optional(check_topic_arn, args.sns_topic_arn),
        catalog_table=optional(ledger.check_table_name, args.catalog_table),
    )
    if args.run_id:
        config.run_id = args.run_id
    return config


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    spark = job_session(config.run_id)
    run_backfill(spark, config)
    passed = True
    if args.validate and not config.dry_run:
        from thumbs import validate

        outcomes, where = validate.check_table(
            spark, config.table, dest_uri=config.dest.uri(), report_to=args.validate,
            settings=config.s3,
        )
        passed = validate.print_outcomes(outcomes, where)
    spark.stop()
    return 0 if passed else 1
