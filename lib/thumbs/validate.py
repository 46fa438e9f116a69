"""Data-quality checks on the results table, as a Great Expectations suite.

    ./spark-submit.sh jobs/validate.py --table out/results [--dest out/thumbnails] [--since 2026-12-01]

Each rule is one expectation over a column derived from the table, named so a failure reads as
the rule it breaks (`one_ok_row_per_version`, `thumbnails_inside_destination`, ...). The rules
that apply to some rows only (ok rows, failures) use columns that are null elsewhere, which
Great Expectations skips. The run writes the full validation result as JSON (to a folder or an
S3 prefix), prints one line per rule and exits 1 when any rule fails, so it can follow each
backfill and run on a schedule for the stream.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from thumbs.keys import document_prefix
from thumbs.options import Limits
from thumbs.status import SUCCESS, Status
from thumbs.storage import S3Settings, parse_location, s3_client

log = logging.getLogger(__name__)

DEFAULT_MAX_RENDER_MS = 2000.0 * Limits.timeout_seconds
"""Longest plausible render time: twice the default per-document timeout."""


@dataclass(frozen=True)
class Rule:
    """One check: the derived column it reads, the expectation on it, and why it matters."""

    name: str
    column: str
    expectation: str
    arguments: dict[str, Any]
    why: str


def rules(max_render_ms: float) -> list[Rule]:
    """The suite, in the order it is reported."""
    statuses = sorted(status.value for status in Status)
    return [
        Rule("status_known", "status", "ExpectColumnValuesToBeInSet", {"value_set": statuses},
             "every row carries a status from the documented taxonomy"),
        Rule("action_known", "action", "ExpectColumnValuesToBeInSet",
             {"value_set": ["render", "delete"]}, "rows either render or delete a document"),
        Rule("one_ok_row_per_version", "ok_version", "ExpectColumnValuesToBeUnique", {},
             "a document version is rendered successfully once; two ok rows mean double work"),
        Rule("ok_rows_have_thumbnails", "ok_thumbnail_count", "ExpectColumnValuesToBeBetween",
             {"min_value": 1}, "an ok row lists the thumbnails it wrote"),
        Rule("thumbnails_have_positive_size", "ok_smallest_thumbnail", "ExpectColumnValuesToBeBetween",
             {"min_value": 1}, "every thumbnail has bytes, a width and a height"),
        Rule("failures_have_no_thumbnails", "failure_thumbnail_count", "ExpectColumnValuesToBeBetween",
             {"min_value": 0, "max_value": 0}, "a failed or deleted document lists no thumbnails"),
        Rule("failures_are_explained", "failure_explained", "ExpectColumnValuesToBeInSet",
             {"value_set": [True]}, "a failure carries an error class and a message"),
        Rule("render_time_in_range", "render_ms", "ExpectColumnValuesToBeBetween",
             {"min_value": 0, "max_value": max_render_ms},
             "render times are positive and below the time limit (with margin)"),
        Rule("thumbnails_inside_destination", "thumbnails_misplaced", "ExpectColumnValuesToBeBetween",
             {"min_value": 0, "max_value": 0},
             "every thumbnail key lies under its document's prefix inside the destination"),
    ]


def _expected_prefix(root: str | None, bucket: str | None, key: str | None) -> str | None:
    if root is None or bucket is None or key is None:
        return None
    location = urlparse(root)
    dest_prefix = location.path.lstrip("/") if location.scheme == "s3" else ""
    return document_prefix(dest_prefix, bucket, key)


@F.udf(returnType=T.IntegerType())
def _misplaced(root: str | None, bucket: str | None, key: str | None, keys: list[str] | None) -> int:
    """How many of a row's thumbnail keys are not under the prefix the key layout gives it."""
    prefix = _expected_prefix(root, bucket, key)
    if prefix is None:
        return len(keys or [])
    return sum(1 for k in keys or [] if not k.startswith(prefix) or "/../" in f"/{k}")


def derived(table: DataFrame, dest_uri: str | None = None) -> DataFrame:
    """The table with one column per rule, null where the rule does not apply."""
    thumbnails = F.col("thumbnails")
    is_ok = F.col("status") == Status.OK.value
    failure = ~F.col("status").isin(*sorted(SUCCESS))
    smallest = F.array_min(
        F.transform(thumbnails, lambda t: F.least(t["bytes"], t["width"].cast("long"), t["height"].cast("long")))
    )
    root_ok: Column = F.lit(True) if dest_uri is None else F.col("thumbnail_root") == dest_uri
    misplaced = _misplaced(
        "thumbnail_root", "source_bucket", "source_key", F.transform(thumbnails, lambda t: t["key"])
    )
    return table.select(
        "status",
        "action",
        "render_ms",
        F.when(is_ok & (F.col("action") == "render"),
               F.concat_ws("\u0000", "source_bucket", "source_key", F.coalesce("etag", F.lit(""))))
        .alias("ok_version"),
        F.when(is_ok, F.size(thumbnails)).alias("ok_thumbnail_count"),
        F.when(is_ok, smallest).alias("ok_smallest_thumbnail"),
        F.when(~is_ok, F.size(thumbnails)).alias("failure_thumbnail_count"),
        F.when(failure, F.col("error_class").isNotNull() & F.col("error_message").isNotNull())
        .alias("failure_explained"),
        F.when(root_ok, misplaced).otherwise(F.greatest(F.size(thumbnails), F.lit(1)))
        .alias("thumbnails_misplaced"),
    )


@dataclass
class Outcome:
    """A rule's verdict: how many rows break it and a few of their values."""

    rule: Rule
    success: bool
    unexpected: int
    examples: list[Any]


def validate(frame: DataFrame, suite: list[Rule]) -> tuple[list[Outcome], dict[str, Any]]:
    """Run the suite over a frame from `derived`; the verdicts and the full GX result."""
    import great_expectations as gx
    from great_expectations import expectations
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_spark(name="thumbnail_results")
        .add_dataframe_asset(name="results")
        .add_batch_definition_whole_dataframe("whole table")
    )
    expectation_suite = context.suites.add(gx.ExpectationSuite(name="thumbnail_results"))
    for rule in suite:
        kind = getattr(expectations, rule.expectation)
        meta = {"rule": rule.name, "why": rule.why}
        expectation_suite.add_expectation(kind(column=rule.column, meta=meta, **rule.arguments))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=expectation_suite, name="thumbnail_results")
    )
    result = definition.run(batch_parameters={"dataframe": frame})
    by_name = {rule.name: rule for rule in suite}
    outcomes = [
        Outcome(
            rule=by_name[_rule_name(item)],
            success=bool(item.success),
            unexpected=int(item.result.get("unexpected_count") or 0),
            examples=list(item.result.get("partial_unexpected_list") or [])[:5],
        )
        for item in result.results
    ]
    outcomes.sort(key=lambda outcome: [r.name for r in suite].index(outcome.rule.name))
    return outcomes, result.to_json_dict()  # type: ignore[no-untyped-call]


def _rule_name(item: Any) -> str:
    """The rule an expectation's result belongs to, from the meta `validate` gave it."""
    config = item.expectation_config
    if config is None or "rule" not in (config.meta or {}):
        raise ValueError(f"a validation result without its rule: {item}")
    return str(config.meta["rule"])


def write_report(report: dict[str, Any], where: str, settings: S3Settings) -> str:
    """Write the JSON result under `where` (folder or s3:// prefix); returns its location."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"validation-{stamp}.json"
    body = json.dumps(report, indent=2, default=str).encode()
    location = urlparse(where)
    if location.scheme in ("s3", "s3a"):
        key = location.path.strip("/") + "/" + name if location.path.strip("/") else name
        s3_client(settings).put_object(
            Bucket=location.netloc, Key=key, Body=body, ContentType="application/json"
        )
        return f"s3://{location.netloc}/{key}"
    folder = Path(url2pathname(location.path)) if location.scheme == "file" else Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(body)
    return str(folder / name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobs/validate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="out/results", help="path or s3:// URL of the results table (default: %(default)s)")
    parser.add_argument("--dest", help="the thumbnail destination the rows must point at (default: any; keys are still checked against their own root)")
    parser.add_argument("--since", type=dt.date.fromisoformat, help="only rows processed on or after this date (YYYY-MM-DD); reads those partitions only")
    parser.add_argument("--max-render-ms", type=float, default=DEFAULT_MAX_RENDER_MS, help="longest plausible render time (default: twice the default timeout, %(default)s)")
    parser.add_argument("--report", default="out/validation", help="folder or s3:// prefix for the JSON validation result (default: %(default)s)")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 or AWS)")
    return parser


def check_table(
    spark: SparkSession,
    table_path: str,
    *,
    dest_uri: str | None = None,
    since: dt.date | None = None,
    max_render_ms: float = DEFAULT_MAX_RENDER_MS,
    report_to: str = "out/validation",
    settings: S3Settings | None = None,
) -> tuple[list[Outcome], str]:
    """Validate the Delta table at `table_path` and write the report; verdicts and where it went."""
    table = spark.read.format("delta").load(table_path)
    if since:
        table = table.where(F.col("processed_date") >= F.lit(since))
    outcomes, report = validate(derived(table, dest_uri), rules(max_render_ms))
    where = write_report(report, report_to, settings or S3Settings.from_env())
    return outcomes, where


def run(spark: SparkSession, args: argparse.Namespace) -> tuple[list[Outcome], str]:
    """Validate the table named by `args`, write the report; the verdicts and where it went."""
    from thumbs.cli import table_path

    return check_table(
        spark,
        table_path(args.table),
        dest_uri=parse_location(args.dest).uri() if args.dest else None,
        since=args.since,
        max_render_ms=args.max_render_ms,
        report_to=args.report,
        settings=S3Settings.from_env(endpoint_url=args.s3_endpoint_url),
    )


def print_outcomes(outcomes: list[Outcome], where: str) -> bool:
    """One line per rule and a verdict line, for an operator's terminal; True if all passed."""
    for outcome in outcomes:
        verdict = "pass" if outcome.success else "FAIL"
        detail = "" if outcome.success else f" rows={outcome.unexpected} examples={outcome.examples}"
        print(f"{verdict} {outcome.rule.name}: {outcome.rule.why}{detail}")
    failed = [o.rule.name for o in outcomes if not o.success]
    print(f"validation {'failed: ' + ', '.join(failed) if failed else 'passed'}; result in {where}")
    if failed:
        log.warning("validation failed rules=%s result=%s", ",".join(failed), where)
    return not failed


def main(argv: list[str] | None = None) -> int:
    from thumbs.logs import configure_logging
    from thumbs.spark import job_session

    args = build_parser().parse_args(argv)
    configure_logging()
    spark = job_session("validate")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    outcomes, where = run(spark, args)
    return 0 if print_outcomes(outcomes, where) else 1


if __name__ == "__main__":
    sys.exit(main())
