"""The Delta results table: its schema, SQL access, what counts as done, idempotent appends."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

from thumbs import backfill, ledger, stream
from thumbs.backfill import register_catalog_table

README = Path(__file__).resolve().parents[1] / "README.md"


def result_row(key: str, status: str, etag: str = "e1", run: str = "r1") -> dict[str, Any]:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    return {
        "source_bucket": "docs", "source_key": key, "source_uri": f"s3://docs/{key}", "etag": etag,
        "version_id": None, "sequencer": None, "size_bytes": 100, "last_modified": now,
        "action": "render", "status": status, "error_class": None, "error_message": None,
        "page_count": 1, "thumbnail_root": "s3://thumbs",
        "thumbnails": [{"key": f"docs/{key}/p1-256.webp", "page": 1, "size": 256, "density": 1, "width": 181,
                        "height": 256, "format": "webp", "bytes": 900}] if status == "ok" else [],
        "fetch_ms": 1.0, "render_ms": 2.0, "upload_ms": 3.0, "total_ms": 6.0, "job": "backfill",
        "job_run_id": run, "batch_id": 0, "processed_at": now, "processed_date": now.date(),
    }


def test_the_table_has_the_documented_schema(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    ledger.ensure_table(spark, path)
    ledger.ensure_table(spark, path)  # a second call, as a racing job would make, is harmless
    schema = ledger.read(spark, path).schema
    assert schema.fieldNames() == ledger.RESULT_SCHEMA.fieldNames()
    documented = README.read_text()
    for name in ledger.RESULT_SCHEMA.fieldNames() + ledger.THUMBNAIL_TYPE.fieldNames():
        assert f"`{name}`" in documented, f"column {name} is not described in the README"


def test_rows_are_readable_with_plain_sql(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    ledger.ensure_table(spark, path)
    rows = [result_row("a.pdf", "ok"), result_row("b.pdf", "corrupt")]
    ledger.append(spark.createDataFrame(rows, ledger.RESULT_SCHEMA), path)
    counted = spark.sql(
        f"SELECT status, count(*) AS n FROM delta.`{path}` GROUP BY status ORDER BY status"
    ).collect()
    assert [(r.status, r.n) for r in counted] == [("corrupt", 1), ("ok", 1)]
    widths = spark.sql(f"SELECT t.width FROM delta.`{path}` LATERAL VIEW explode(thumbnails) AS t")
    assert [r.width for r in widths.collect()] == [181]


def test_done_means_ok_or_a_permanent_failure(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    assert ledger.done_versions(spark, path).count() == 0  # no table yet: nothing is done
    ledger.ensure_table(spark, path)
    rows = [
        result_row("ok.pdf", "ok"),
        result_row("corrupt.pdf", "corrupt"),
        result_row("flaky.pdf", "failed_transient"),
        result_row("ok.pdf", "ok", etag="e2-not-rendered").copy() | {"status": "access_denied"},
    ]
    ledger.append(spark.createDataFrame(rows, ledger.RESULT_SCHEMA), path)
    done = {(r.source_key, r.etag) for r in ledger.done_versions(spark, path).collect()}
    assert done == {("ok.pdf", "e1"), ("corrupt.pdf", "e1")}
    retry = {(r.source_key, r.etag) for r in ledger.done_versions(spark, path, retry_failed=True).collect()}
    assert retry == {("ok.pdf", "e1")}


def test_a_replayed_transaction_commits_once(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    ledger.ensure_table(spark, path)
    batch = spark.createDataFrame([result_row("a.pdf", "ok")], ledger.RESULT_SCHEMA)
    ledger.append(batch, path, txn=("stream-query-1", 5))
    ledger.append(batch, path, txn=("stream-query-1", 5))
    ledger.append(batch, path, txn=("stream-query-1", 6))
    assert ledger.read(spark, path).count() == 2


def test_the_readme_lists_every_status_with_its_retry_rule() -> None:
    from thumbs.status import STATUS_INFO

    lines = {line.split("|")[1].strip(): line for line in README.read_text().splitlines()
             if line.startswith("| `")}
    for status, info in STATUS_INFO.items():
        line = lines.get(f"`{status.value}`")
        assert line is not None, f"status {status.value} is missing from the README"
        assert line.split("|")[3].strip() == ("yes" if info.retried else "no"), status.value


def test_the_table_registers_under_a_name_and_dropping_the_name_keeps_the_data(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, elsewhere = str(tmp_path / "results"), str(tmp_path / "other")
    for table in (path, elsewhere):
        ledger.ensure_table(spark, table)
    rows = [result_row("a.pdf", "ok"), result_row("b.pdf", "corrupt")]
    ledger.append(spark.createDataFrame(rows, ledger.RESULT_SCHEMA), path)
    monkeypatch.setattr(logging.getLogger("thumbs"), "propagate", True)  # reach caplog
    try:
        with caplog.at_level(logging.INFO, logger="thumbs"):
            register_catalog_table(spark, "run-1", "thumbs_test.results", path)
            register_catalog_table(spark, "run-2", "thumbs_test.results", path)  # a rerun: no-op
            register_catalog_table(spark, "run-3", "thumbs_test.results", elsewhere)
        assert spark.sql("SELECT count(*) FROM thumbs_test.results").first()[0] == 2
        table = spark.catalog.getTable("thumbs_test.results")
        assert table.tableType == "EXTERNAL"
        lines = [r.getMessage() for r in caplog.records if r.name == "thumbs.backfill"]
        assert lines[0].startswith("catalog table registered run=run-1 name=thumbs_test.results ")
        assert lines[1].startswith("catalog table registered run=run-2 ")
        assert lines[2].startswith("catalog table points elsewhere run=run-3 ")
    finally:
        spark.sql("DROP DATABASE IF EXISTS thumbs_test CASCADE")
    assert not spark.catalog.databaseExists("thumbs_test")
    assert list((tmp_path / "results" / "_delta_log").glob("*.json"))
    assert list((tmp_path / "results").rglob("*.parquet"))
    assert ledger.read(spark, path).count() == 2


@pytest.mark.parametrize(
    "name", ["", "results-v2", "1results", "db.", ".results", "a.b.c.d", "db.t; DROP", "db.`t`"]
)
def test_catalog_names_that_are_not_plain_identifiers_are_refused(spark: Any, name: str) -> None:
    with pytest.raises(ValueError, match="catalog table name"):
        ledger.register_table(spark, name, "/data/results")
    with pytest.raises(ValueError, match="catalog table name"):
        backfill.config_from_args(backfill.build_parser().parse_args(["--catalog-table", name]))


def test_catalog_paths_with_quotes_are_refused(spark: Any) -> None:
    for path in ["/data/it's", '/data/"x"', "/data/a\\b", ""]:
        with pytest.raises(ValueError, match="must not contain quotes"):
            ledger.register_table(spark, "thumbs_test.results", path)
    assert not spark.catalog.databaseExists("thumbs_test")


def test_both_jobs_take_the_catalog_table_flag() -> None:
    flags = ["--catalog-table", "lake.thumbnail_results"]
    assert backfill.config_from_args(backfill.build_parser().parse_args(flags)).catalog_table == (
        "lake.thumbnail_results"
    )
    args = stream.build_parser().parse_args(["--bootstrap-servers", "k:9092", *flags])
    assert stream.config_from_args(args).catalog_table == "lake.thumbnail_results"
    assert ledger.check_table_name("spark_catalog.lake.results") == "spark_catalog.lake.results"
