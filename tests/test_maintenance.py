"""Table hygiene: compaction keeps every row in fewer files, vacuum deletes only unreferenced
files, the quarantine loses only messages past their retention, and a dry run changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.test_ledger import result_row
from thumbs import ledger, maintenance
from thumbs.stream import QUARANTINE_SCHEMA

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _results_in_small_files(spark: Any, path: str, appends: int) -> None:
    """A results table for today written as one small file per append, as micro-batches do."""
    ledger.ensure_table(spark, path)
    for batch in range(appends):
        rows = []
        for name in ("a", "b"):
            row = result_row(f"{name}-{batch}.pdf", "ok")
            row.update(processed_at=NOW, processed_date=NOW.date(), batch_id=batch)
            rows.append(row)
        ledger.append(spark.createDataFrame(rows, ledger.RESULT_SCHEMA).coalesce(1), path)


def _quarantine(spark: Any, path: str, ages_in_days: list[int]) -> None:
    rows = [
        ("pdf-uploads", 0, offset, None, "not JSON", b"junk", "stream-1", 0,
         NOW - dt.timedelta(days=age))
        for offset, age in enumerate(ages_in_days)
    ]
    spark.createDataFrame(rows, QUARANTINE_SCHEMA).write.format("delta").save(path)


def _parquet_files(path: str) -> int:
    return len(list(Path(path).rglob("*.parquet")))


def test_compaction_keeps_every_row_in_fewer_files(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    _results_in_small_files(spark, path, appends=6)
    assert maintenance.file_count(spark, path) == 6

    config = maintenance.MaintenanceConfig(table=path, vacuum_hours=None)
    [report] = maintenance.run(spark, config)
    assert (report.files_before, report.files_after) == (6, 1)
    assert report.steps["optimize"]["files_removed"] == 6
    assert ledger.read(spark, path).count() == 12
    assert _parquet_files(path) == 7, "old files stay until a vacuum past their retention"


def test_vacuum_deletes_only_what_no_version_reads(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "results")
    _results_in_small_files(spark, path, appends=3)
    maintenance.optimize(spark, path, days=1, zorder=True)
    assert _parquet_files(path) == 4

    # The job itself refuses retentions under Delta's floor; the test lowers the floor to see
    # the files go without waiting a week.
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(key, "false")
    try:
        planned = maintenance.vacuum(spark, path, hours=0, dry_run=True)
        assert planned["files_to_delete"] == 3 and _parquet_files(path) == 4
        maintenance.vacuum(spark, path, hours=0, dry_run=False)
    finally:
        spark.conf.set(key, "true")
    assert _parquet_files(path) == 1
    assert ledger.read(spark, path).count() == 6


def test_the_quarantine_loses_only_messages_past_retention(spark: Any, tmp_path: Path) -> None:
    results, quarantine = str(tmp_path / "results"), str(tmp_path / "quarantine")
    _results_in_small_files(spark, results, appends=1)
    _quarantine(spark, quarantine, ages_in_days=[45, 31, 29, 0])

    dry = maintenance.MaintenanceConfig(results, quarantine, quarantine_days=30, dry_run=True)
    reports = maintenance.run(spark, dry)
    assert reports[1].rows_deleted == 2
    assert spark.read.format("delta").load(quarantine).count() == 4, "a dry run deletes nothing"

    config = maintenance.MaintenanceConfig(results, quarantine, quarantine_days=30)
    _, report = maintenance.run(spark, config)
    assert report.rows_deleted == 2
    offsets = sorted(r.offset for r in spark.read.format("delta").load(quarantine).collect())
    assert offsets == [2, 3]


def test_a_missing_quarantine_table_is_skipped(spark: Any, tmp_path: Path) -> None:
    results = str(tmp_path / "results")
    _results_in_small_files(spark, results, appends=1)
    config = maintenance.MaintenanceConfig(results, str(tmp_path / "never-written"))
    assert [r.path for r in maintenance.run(spark, config)] == [results]


def test_flags_refuse_retentions_under_the_safety_floor() -> None:
    parser = maintenance.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--vacuum-hours", "24"])
    args = parser.parse_args(["--vacuum-hours", "off", "--optimize-days", "7", "--quarantine-table", "none"])
    config = maintenance.config_from_args(args)
    assert (config.vacuum_hours, config.optimize_days, config.quarantine_table) == (None, 7, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--quarantine-days", "0"])
