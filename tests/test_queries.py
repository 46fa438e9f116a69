"""The documented queries, run against a table a real backfill of the bundled samples built."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES
from thumbs import queries
from thumbs.storage import S3Settings


@pytest.fixture(scope="module")
def results(sample_results: str) -> str:
    return queries.table_reference(sample_results)


def test_failures_by_class_and_day(spark: Any, results: str) -> None:
    rows = queries.run(spark, "failures_by_class_and_day", results).collect()
    assert {(r.status, r.documents) for r in rows} == {
        ("password_required", 1), ("corrupt", 1), ("invalid_page", 1), ("not_pdf", 1)
    }


def test_throughput_and_render_time_percentiles_per_hour(spark: Any, results: str) -> None:
    rows = queries.run(spark, "throughput_per_hour", results).collect()
    assert sum(r.documents for r in rows) == 11
    ok = spark.sql(f"SELECT page_count FROM {results} WHERE status = 'ok'").collect()
    assert sum(r.thumbnails for r in rows) == sum(min(r.page_count, 2) for r in ok)  # --pages 2
    assert all(0 < r.render_ms_p50 <= r.render_ms_p95 <= r.render_ms_p99 for r in rows)


def test_slowest_documents_come_first(spark: Any, results: str) -> None:
    times = [r.render_ms for r in queries.run(spark, "slowest_documents", results).collect()]
    assert times == sorted(times, reverse=True) and len(times) == 11


def test_latest_versions_without_thumbnails_are_the_failures(spark: Any, results: str) -> None:
    keys = {r.source_key for r in queries.run(spark, "latest_version_without_thumbnails", results).collect()}
    assert keys == {
        "sample-files/libreoffice-writer-password.pdf", "pdfium/bug_298.pdf",
        "pdfium/cropped_no_overlap.pdf", "not-a-pdf.pdf",
    }


def test_thumbnail_bytes_per_prefix(spark: Any, results: str) -> None:
    rows = {r.prefix: r for r in queries.run(spark, "thumbnail_bytes_per_prefix", results).collect()}
    assert rows["sample-files/"].documents == 6 and rows["pdfium/"].documents == 1
    assert all(r.thumbnail_bytes > 0 for r in rows.values())


def test_documents_waiting_are_the_versions_the_ledger_has_not_finished(
    spark: Any, results: str, tmp_path: Path
) -> None:
    source = tmp_path / SAMPLES.name  # a folder lists as the bucket of its name, as the rows say
    shutil.copytree(SAMPLES, source)
    assert queries.register_source_objects(spark, str(source)) == 11
    assert queries.run(spark, "documents_waiting", results).count() == 0

    (source / "new").mkdir()
    shutil.copy(SAMPLES / "sample-files" / "minimal-document.pdf", source / "new" / "added.pdf")
    with (source / "sample-files" / "pdflatex-image.pdf").open("ab") as changed:
        changed.write(b"\n% a new version\n")
    queries.register_source_objects(spark, str(source), view="objects_now")
    waiting = queries.run(spark, "documents_waiting", results, objects="objects_now").collect()
    assert {(r.source_key, r.last_status) for r in waiting} == {
        ("new/added.pdf", None), ("sample-files/pdflatex-image.pdf", None),
    }


def test_references_name_paths_and_catalog_tables(tmp_path: Path) -> None:
    assert queries.reference("lake.thumbnail_results") == "lake.thumbnail_results"
    assert queries.reference("s3://lake/results") == "delta.`s3://lake/results`"
    assert queries.reference(str(tmp_path / "r")) == f"delta.`{tmp_path / 'r'}`"


def test_unknown_names_and_unsafe_paths_are_refused(spark: Any) -> None:
    with pytest.raises(ValueError, match="no query named"):
        queries.run(spark, "nope", "t")
    with pytest.raises(ValueError, match="backtick"):
        queries.table_reference("a`b")


def test_the_contact_sheet_has_one_tile_per_document(spark: Any, results: str) -> None:
    from thumbs.contact_sheet import CAPTION, TILE, draw_sheet, latest_documents

    documents = latest_documents(spark, results, None, 100)
    assert len(documents) == 11
    sheet = draw_sheet(documents, 4, S3Settings())
    assert sheet.size == (4 * TILE, 3 * (TILE + CAPTION))
    grey = sheet.convert("L")
    inked = [
        index for index in range(len(documents))
        if grey.crop(((index % 4) * TILE + 8, (index // 4) * (TILE + CAPTION) + 8,
                      (index % 4 + 1) * TILE - 8, (index // 4) * (TILE + CAPTION) + TILE - 8)
                     ).getextrema()[0] < 250
    ]
    assert [documents[i]["status"] for i in inked] == ["ok"] * 7, "a thumbnail in each ok tile only"
    ok_only = latest_documents(spark, results, "status = 'ok'", 100)
    assert len(ok_only) == 7
