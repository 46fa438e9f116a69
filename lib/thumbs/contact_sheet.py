"""A contact sheet: one PNG of thumbnails with each document's key and status, for looking.

    python -m thumbs.contact_sheet out/results --out sheet.png [--where "status = 'ok'"]

Reads the results table's latest row per document (optionally filtered with a SQL condition),
takes each document's first thumbnail from where the row says it was written (a local folder or
S3), and lays them out in a grid of fixed tiles. Documents without a thumbnail get an empty tile
that still carries the key and status, so failures are visible too.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from PIL import Image, ImageDraw

from thumbs.storage import S3Settings, s3_client

TILE = 200
"""Width and height of the image area of one tile, in pixels."""
CAPTION = 30
"""Height of the caption under each tile: key on one line, status on the next."""
STATUS_COLOURS = {"ok": (30, 120, 30), "deleted": (90, 90, 90)}
FAILURE_COLOUR = (170, 30, 30)


def load_thumbnail(root: str, key: str, settings: S3Settings) -> Image.Image:
    """A thumbnail written under `root` (`s3://bucket` or `file:///folder`)."""
    location = urlparse(root)
    if location.scheme == "s3":
        body = s3_client(settings).get_object(Bucket=location.netloc, Key=key)["Body"].read()
        return Image.open(io.BytesIO(body)).convert("RGB")
    return Image.open(Path(url2pathname(location.path)) / key).convert("RGB")


def draw_sheet(documents: list[dict[str, Any]], columns: int, settings: S3Settings) -> Image.Image:
    """The grid: one tile per document, in the order given."""
    rows = max(1, math.ceil(len(documents) / columns))
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION)), "white")
    pen = ImageDraw.Draw(sheet)
    for index, document in enumerate(documents):
        left, top = (index % columns) * TILE, (index // columns) * (TILE + CAPTION)
        pen.rectangle((left, top, left + TILE - 1, top + TILE - 1), outline=(210, 210, 210))
        if document["thumbnail_key"]:
            image = load_thumbnail(document["thumbnail_root"], document["thumbnail_key"], settings)
            image.thumbnail((TILE - 8, TILE - 8))
            sheet.paste(image, (left + (TILE - image.width) // 2, top + (TILE - image.height) // 2))
        status = document["status"]
        colour = STATUS_COLOURS.get(status, FAILURE_COLOUR)
        pen.text((left + 4, top + TILE + 2), _shorten(document["source_key"], 32), fill=(0, 0, 0))
        pen.text((left + 4, top + TILE + 15), status, fill=colour)
    return sheet


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def latest_documents(spark: Any, table: str, where: str | None, limit: int) -> list[dict[str, Any]]:
    """Each document's latest row, with its first thumbnail's key (or none).

    `table` is as SQL names it: a catalog name or ``delta.`path` `` (see `queries.reference`).
    """
    condition = f"AND ({where})" if where else ""
    rows = spark.sql(
        f"""
        SELECT source_key, status, thumbnail_root,
               CASE WHEN size(thumbnails) > 0 THEN thumbnails[0].key END AS thumbnail_key
        FROM (SELECT *, row_number() OVER (
                  PARTITION BY source_bucket, source_key ORDER BY processed_at DESC) AS recency
              FROM {table})
        WHERE recency = 1 {condition}
        ORDER BY source_key
        LIMIT {int(limit)}
        """
    ).collect()
    return [row.asDict() for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thumbs.contact_sheet", description=__doc__.splitlines()[0])
    parser.add_argument("table", help="path or s3:// URL of the Delta results table, or its catalog name")
    parser.add_argument("--out", default="contact-sheet.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--where", help="SQL condition on the table's columns, e.g. \"source_key LIKE 'invoices/%%'\"")
    parser.add_argument("--columns", type=int, default=8, help="tiles per row (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=400, help="most documents on the sheet (default: %(default)s)")
    args = parser.parse_args(argv)

    from thumbs.queries import reference
    from thumbs.spark import local_session

    spark = local_session("thumbs-contact-sheet", cores=1)
    spark.sparkContext.setLogLevel("ERROR")
    documents = latest_documents(spark, reference(args.table), args.where, args.limit)
    spark.stop()
    sheet = draw_sheet(documents, args.columns, S3Settings.from_env())
    sheet.save(args.out)
    print(f"{args.out}: {len(documents)} documents, {sheet.width}x{sheet.height} pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
