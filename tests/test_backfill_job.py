"""The backfill job end to end, through spark-submit.sh, on folders and on a local S3 server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import REPO, S3_ENV, SAMPLES

pytestmark = pytest.mark.heavy

EXPECTED = {
    "sample-files/minimal-document.pdf": "ok",
    "sample-files/pdflatex-4-pages.pdf": "ok",
    "sample-files/pdflatex-image.pdf": "ok",
    "sample-files/libreoffice-form.pdf": "ok",
    "sample-files/habibi-rotated.pdf": "ok",
    "sample-files/grayscale-image.pdf": "ok",
    "sample-files/libreoffice-writer-password.pdf": "password_required",
    "pdfium/bug_298.pdf": "corrupt",
    "pdfium/rotated_text_90.pdf": "ok",
    "pdfium/cropped_no_overlap.pdf": "invalid_page",
    "not-a-pdf.pdf": "not_pdf",
}
"""Every bundled sample and the status it must end in (see the samples' README)."""


def backfill(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    """Run the job as a user would; return what it printed, failing the test if it failed."""
    environment = {**os.environ, "THUMBS_PYTHON": sys.executable, **(env or {})}
    done = subprocess.run(
        [str(REPO / "spark-submit.sh"), str(REPO / "jobs" / "backfill.py"), *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    return done.stdout + done.stderr


def rows_by_key(spark: Any, table: Path) -> dict[str, Any]:
    rows = spark.read.format("delta").load(str(table)).collect()
    assert len({r.source_key for r in rows}) == len(rows), "one row per document"
    return {r.source_key: r for r in rows}


def test_folders_end_to_end_and_a_second_run_renders_nothing(spark: Any, tmp_path: Path) -> None:
    source = tmp_path / "inbox"
    shutil.copytree(SAMPLES, source)
    table, dest = tmp_path / "results", tmp_path / "thumbs"
    args = ["--source", str(source), "--dest", str(dest), "--table", str(table),
            "--pages", "2", "--sizes", "64,160", "--format", "png"]
    backfill(*args)

    rows = rows_by_key(spark, table)
    assert {key: row.status for key, row in rows.items()} == EXPECTED
    four_pages = rows["sample-files/pdflatex-4-pages.pdf"]
    assert four_pages.page_count == 4 and four_pages.job == "backfill"
    assert sorted((t.page, t.size) for t in four_pages.thumbnails) == [(1, 64), (1, 160), (2, 64), (2, 160)]
    for row in rows.values():
        for thumb in row.thumbnails:
            image = Image.open(dest / thumb.key)
            assert image.format == "PNG" and image.size == (thumb.width, thumb.height)
            assert max(image.size) == thumb.size and thumb.bytes == (dest / thumb.key).stat().st_size
        assert bool(row.thumbnails) == (row.status == "ok")
        assert row.error_message is None if row.status == "ok" else row.error_message

    output = backfill(*args, "--validate", str(tmp_path / "validation"))
    assert "already_done=11 rendered=0" in output
    assert spark.read.format("delta").load(str(table)).count() == len(EXPECTED)
    assert "validation passed" in output and "pass one_ok_row_per_version" in output
    assert len(list((tmp_path / "validation").glob("validation-*.json"))) == 1


def test_buckets_on_a_local_s3_server(spark: Any, s3: Any, s3_server: str, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="docs")
    s3.create_bucket(Bucket="thumbs")
    for path in sorted(SAMPLES.rglob("*.pdf")):
        s3.put_object(Bucket="docs", Key=f"2024/{path.relative_to(SAMPLES).as_posix()}", Body=path.read_bytes())
    s3.put_object(Bucket="docs", Key="2024/deep/a b+c/naïve.pdf", Body=(SAMPLES / "pdfium" / "rotated_text_90.pdf").read_bytes())
    s3.put_object(Bucket="docs", Key="2023/outside-the-prefix.pdf", Body=b"%PDF-")
    env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": s3_server}
    table = tmp_path / "results"
    args = ["--source", "s3://docs/2024/", "--dest", "s3://thumbs/previews/", "--table", str(table)]

    dry = backfill(*args, "--dry-run", env=env)
    assert "12 to render" in dry and not table.exists()

    backfill(*args, env=env)
    rows = rows_by_key(spark, table)
    expected = {f"2024/{key}": status for key, status in EXPECTED.items()} | {"2024/deep/a b+c/naïve.pdf": "ok"}
    assert {key: row.status for key, row in rows.items()} == expected
    unicode_row = rows["2024/deep/a b+c/naïve.pdf"]
    (thumb,) = unicode_row.thumbnails
    assert thumb.key == "previews/docs/2024/deep/a%20b%2Bc/na%C3%AFve.pdf/p1-256.webp"
    head = s3.head_object(Bucket="thumbs", Key=thumb.key)
    assert head["ContentType"] == "image/webp" and head["ContentLength"] == thumb.bytes
    assert unicode_row.etag == s3.head_object(Bucket="docs", Key="2024/deep/a b+c/naïve.pdf")["ETag"].strip('"')
    listed = s3.list_objects_v2(Bucket="thumbs", Prefix="previews/")["KeyCount"]
    assert listed == sum(len(r.thumbnails) for r in rows.values()) == 8

    output = backfill(*args, env=env)
    assert "rendered=0" in output
    assert spark.read.format("delta").load(str(table)).count() == len(expected)


def test_no_arguments_renders_the_bundled_samples_into_out(spark: Any, tmp_path: Path) -> None:
    output = backfill(cwd=tmp_path)
    assert f"thumbnails: {(tmp_path / 'out' / 'thumbnails').as_uri()}" in output
    rows = rows_by_key(spark, tmp_path / "out" / "results")
    assert {key: row.status for key, row in rows.items()} == EXPECTED
    assert len(list((tmp_path / "out" / "thumbnails").rglob("*.webp"))) == 7


def test_limit_and_since(spark: Any, tmp_path: Path) -> None:
    table = tmp_path / "results"
    output = backfill("--dest", str(tmp_path / "t"), "--table", str(table), "--limit", "3")
    assert "already_done=0 rendered=3" in output
    assert spark.read.format("delta").load(str(table)).count() == 3
    output = backfill("--dest", str(tmp_path / "t"), "--table", str(table), "--dry-run")
    assert "3 already done, 8 to render" in output
    output = backfill("--table", str(table), "--since", "2999-01-01", "--dry-run")
    assert "0 objects listed" in output
