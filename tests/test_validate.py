"""The data-quality suite: it passes on a table a real backfill built and fails, naming the
rule, on copies of that table that each break one rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from thumbs import validate
from thumbs.keys import document_prefix

SUITE = validate.rules(max_render_ms=120_000)
OK_KEY = "sample-files/minimal-document.pdf"
FAILED_KEY = "pdfium/bug_298.pdf"


def _failed_rules(table: DataFrame, dest_uri: str | None = None) -> set[str]:
    outcomes, _ = validate.validate(validate.derived(table, dest_uri), SUITE)
    assert [o.rule.name for o in outcomes] == [r.name for r in SUITE]
    return {o.rule.name for o in outcomes if not o.success}


def _on(key: str, column: str, value: Any) -> Callable[[DataFrame], DataFrame]:
    """A change that sets `column` to `value` on the rows of one source key."""
    return lambda t: t.withColumn(
        column, F.when(F.col("source_key") == key, value).otherwise(F.col(column)))


def _first_thumbnail(field: str, value: Any) -> Any:
    return F.transform(
        "thumbnails", lambda t, i: F.when(i == 0, t.withField(field, F.lit(value))).otherwise(t))


def _thumbnail_in_place(t: DataFrame) -> DataFrame:
    """Give the failed document a thumbnail under its own prefix (so only one rule is broken)."""
    root = t.where(F.col("source_key") == FAILED_KEY).first()
    key = document_prefix("", root.source_bucket, FAILED_KEY) + "p1-256.webp"
    thumbnail = F.struct(*[F.lit(v).alias(n) for n, v in
                           [("key", key), ("page", 1), ("size", 256), ("density", 1), ("width", 200),
                            ("height", 256), ("format", "webp"), ("bytes", 1000)]])
    return _on(FAILED_KEY, "thumbnails", F.array(thumbnail))(t)


def breakages() -> dict[str, Callable[[DataFrame], DataFrame]]:
    """One change per rule that breaks that rule alone (built on call: columns need a session)."""
    return {
        "status_known": _on(FAILED_KEY, "status", F.lit("exploded")),
        "action_known": _on(OK_KEY, "action", F.lit("rerender")),
        "one_ok_row_per_version": lambda t: t.unionByName(t.where(F.col("source_key") == OK_KEY)),
        "ok_rows_have_thumbnails": _on(
            OK_KEY, "thumbnails", F.filter("thumbnails", lambda _: F.lit(False))),
        "thumbnails_have_positive_size": _on(OK_KEY, "thumbnails", _first_thumbnail("bytes", 0)),
        "failures_have_no_thumbnails": _thumbnail_in_place,
        "failures_are_explained": _on(FAILED_KEY, "error_class", F.lit(None).cast("string")),
        "render_time_in_range": _on(OK_KEY, "render_ms", F.lit(3_600_000.0)),
        "thumbnails_inside_destination": _on(
            OK_KEY, "thumbnails", _first_thumbnail("key", "elsewhere/../../p1-256.webp")),
    }


@pytest.fixture(scope="module")
def table(spark: Any, sample_results: str) -> DataFrame:
    return spark.read.format("delta").load(sample_results).cache()


def test_the_suite_passes_on_a_real_backfill(table: DataFrame) -> None:
    assert table.where(F.col("source_key") == OK_KEY).first().status == "ok"
    assert table.where(F.col("source_key") == FAILED_KEY).first().status == "corrupt"
    assert _failed_rules(table) == set()


@pytest.mark.parametrize("rule", [rule.name for rule in SUITE])
def test_each_broken_rule_is_named(table: DataFrame, rule: str) -> None:
    assert _failed_rules(breakages()[rule](table)) == {rule}


def test_rows_pointing_at_another_destination_fail(table: DataFrame) -> None:
    assert _failed_rules(table, dest_uri="s3://somewhere-else/thumbs") == {"thumbnails_inside_destination"}


def test_the_job_writes_its_report_and_exits_by_verdict(
    spark: Any, table: DataFrame, sample_results: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = validate.build_parser().parse_args(["--table", sample_results, "--report", str(tmp_path / "ok")])
    outcomes, where = validate.run(spark, args)
    report = json.loads(Path(where).read_text())
    assert report["success"] is True and len(report["results"]) == len(SUITE)
    assert all(o.success for o in outcomes)

    broken = str(tmp_path / "broken")
    breakages()["failures_are_explained"](table).write.format("delta").save(broken)
    args = validate.build_parser().parse_args(["--table", broken, "--report", str(tmp_path / "bad")])
    outcomes, where = validate.run(spark, args)
    assert json.loads(Path(where).read_text())["success"] is False
    assert [o.rule.name for o in outcomes if not o.success] == ["failures_are_explained"]
    assert [o.unexpected for o in outcomes if not o.success] == [1]
