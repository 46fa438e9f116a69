"""The per-document step: every outcome becomes one row, and the row says what happened."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from chispa import assert_df_equality
from PIL import Image

from tests.pdfs import Page, build_pdf
from thumbs import ledger, pipeline
from thumbs.isolation import RenderPool
from thumbs.options import Limits, RenderOptions
from thumbs.pipeline import JobContext, process_document, render_partitions
from thumbs.storage import FolderSink, ObjectRef, S3Settings, parse_location


def local_ref(path: Path, root: Path) -> ObjectRef:
    data = path.read_bytes() if path.exists() else b""
    return ObjectRef(
        root.name,
        path.relative_to(root).as_posix(),
        path.as_uri(),
        hashlib.md5(data).hexdigest(),
        len(data),
    )


def context(dest: Path, **options: Any) -> JobContext:
    return JobContext(RenderOptions(**options), parse_location(str(dest)), S3Settings(), "backfill", "run-1")


def test_a_good_document_gets_an_ok_row_and_its_thumbnails(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "two pages.pdf").write_bytes(build_pdf([Page(), Page()]))
    ctx = context(tmp_path / "out", pages=2, sizes=(64, 128))
    row = process_document(local_ref(source / "two pages.pdf", source), 7, ctx, FolderSink(str(tmp_path / "out")))
    assert (row["status"], row["page_count"], row["batch_id"], row["job"]) == ("ok", 2, 7, "backfill")
    assert [(t["page"], t["size"], t["width"], t["height"]) for t in row["thumbnails"]] == [
        (1, 128, 128, 64), (1, 64, 64, 32), (2, 128, 128, 64), (2, 64, 64, 32)
    ]
    written = tmp_path / "out" / row["thumbnails"][0]["key"]
    assert written == tmp_path / "out" / "in" / "two%20pages.pdf" / "p1-128.webp"
    assert Image.open(written).size == (128, 64)
    assert row["thumbnails"][0]["bytes"] == written.stat().st_size
    assert row["render_ms"] > 0 and row["total_ms"] >= row["render_ms"]


def test_a_render_childs_start_up_is_not_the_first_documents_render_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THUMBS_TEST_START_SECONDS", "2")
    (tmp_path / "x.pdf").write_bytes(build_pdf([Page()]))
    with RenderPool(RenderOptions(), entry="tests.faults:abort_on_marker") as render_pool:
        row = process_document(
            local_ref(tmp_path / "x.pdf", tmp_path), 0, context(tmp_path / "o"),
            FolderSink(str(tmp_path / "o")), renderer=render_pool,
        )
    assert row["status"] == "ok"
    assert row["render_ms"] < 1000 < row["total_ms"], "start-up shows in total_ms, not render_ms"


def test_a_source_over_the_byte_limit_is_refused_before_download(tmp_path: Path) -> None:
    ref = ObjectRef("b", "huge.pdf", (tmp_path / "never-read.pdf").as_uri(), "x", 10**12)
    row = process_document(ref, 0, context(tmp_path), FolderSink(str(tmp_path)))
    assert (row["status"], row["error_class"], row["fetch_ms"]) == ("too_large", "ByteLimit", None)


def test_a_vanished_file_is_missing(tmp_path: Path) -> None:
    ref = ObjectRef("b", "gone.pdf", (tmp_path / "gone.pdf").as_uri(), "x", 10)
    row = process_document(ref, 0, context(tmp_path), FolderSink(str(tmp_path)))
    assert row["status"] == "missing" and "no longer exists" in row["error_message"]


def test_a_defect_in_our_code_costs_one_row_not_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x.pdf").write_bytes(build_pdf([Page()]))

    def broken(data: bytes, options: RenderOptions) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(pipeline, "render_document", broken)
    row = process_document(local_ref(tmp_path / "x.pdf", tmp_path), 0, context(tmp_path / "o"), FolderSink(str(tmp_path / "o")))
    assert (row["status"], row["error_class"]) == ("internal_error", "KeyError")


def test_map_in_pandas_turns_references_into_ledger_rows(spark: Any, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "good.pdf").write_bytes(build_pdf([Page(200, 100)]))
    (source / "text.pdf").write_bytes(b"just text")
    (source / "big.pdf").write_bytes(build_pdf([Page(2000, 2000)]))
    refs = [local_ref(source / name, source) for name in ("good.pdf", "text.pdf", "big.pdf")]
    frame = pd.DataFrame(
        {
            "source_bucket": [r.bucket for r in refs],
            "source_key": [r.key for r in refs],
            "source_uri": [r.uri for r in refs],
            "etag": [r.etag for r in refs],
            "version_id": [None] * 3,
            "sequencer": [None] * 3,
            "size_bytes": [r.size for r in refs],
            "last_modified": pd.to_datetime([None] * 3, utc=True),
            "batch_id": [3] * 3,
        }
    )
    ctx = JobContext(
        RenderOptions(sizes=(512,), limits=Limits(max_pixels=200_000)),
        parse_location(str(tmp_path / "out")), S3Settings(), "backfill", "run-9",
    )
    # 512 px wide: the 2:1 page needs 131,072 pixels, the square one 262,144, over the limit.
    results = (
        spark.createDataFrame(frame, ledger.REF_SCHEMA)
        .repartition(2)
        .mapInPandas(render_partitions(ctx), ledger.RESULT_SCHEMA)
    )
    actual = results.select("source_key", "status", "job_run_id", "batch_id")
    expected = spark.createDataFrame(
        [("good.pdf", "ok", "run-9", 3), ("text.pdf", "not_pdf", "run-9", 3), ("big.pdf", "too_large", "run-9", 3)],
        actual.schema,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
