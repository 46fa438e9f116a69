"""Every file of the shared corpus ends in exactly one row with a documented status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, corpus_folder
from tests.test_backfill_job import backfill
from thumbs.status import Status

pytestmark = pytest.mark.heavy


def test_the_whole_corpus_through_the_backfill_job(spark: Any, tmp_path: Path) -> None:
    corpus_folder("pdfium")
    corpus_folder("sample-files")
    pdfs = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.pdf")}
    table = tmp_path / "results"
    args = ["--source", str(CORPUS), "--dest", str(tmp_path / "thumbs"), "--table", str(table)]

    backfill(*args)
    rows = spark.read.format("delta").load(str(table)).collect()
    assert sorted(r.source_key for r in rows) == sorted(pdfs), "exactly one row per PDF"
    documented = {s.value for s in Status}
    assert {r.status for r in rows} <= documented
    by_key = {r.source_key: r for r in rows}
    assert by_key["sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf"].status == "password_required"
    assert sum(r.status == "ok" for r in rows) > 280
    for row in rows:
        assert (row.status == "ok") == bool(row.thumbnails), row.source_key

    output = backfill(*args)
    assert f"already_done={len(pdfs)} rendered=0" in output
