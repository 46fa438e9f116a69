"""The questions people ask of the results table, as SQL, in one place.

Each query is a template over `{table}`: a catalog name (`thumbs.results`) or a path wrapped as
``delta.`s3://lake/thumbnail_results` ``. `run(spark, name, table)` fills it in and returns a
DataFrame; `reference(text)` turns a path or a catalog name into the right form. The README
shows the first one, the notebook runs them all, and the tests run them against a table built by
a real backfill.

`documents_waiting` also reads `{objects}`, the source objects as they are now (columns
`source_bucket`, `source_key`, `etag`, `size_bytes`, `last_modified`): a view that
`register_source_objects` lists from a bucket prefix or folder, or an S3 Inventory table renamed
to those columns, which is the cheaper way for buckets of millions of objects.
"""

from __future__ import annotations

import re
from typing import Any

from thumbs.status import FINAL_STATUSES, Status
from thumbs.storage import S3Settings, list_objects, parse_location

RETRIED = ", ".join(sorted(f"'{s.value}'" for s in Status if s not in FINAL_STATUSES))
"""Statuses a later run tries again, as a SQL list: a version whose last row has one still waits."""

CATALOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")

QUERIES: dict[str, str] = {
    "failures_by_class_and_day": """
        SELECT processed_date, status, error_class, count(*) AS documents
        FROM {table}
        WHERE status NOT IN ('ok', 'deleted')
        GROUP BY processed_date, status, error_class
        ORDER BY processed_date DESC, documents DESC
    """,
    "throughput_per_hour": """
        SELECT date_trunc('HOUR', processed_at) AS hour,
               count(*) AS documents,
               sum(size(thumbnails)) AS thumbnails,
               percentile_approx(render_ms, 0.5) AS render_ms_p50,
               percentile_approx(render_ms, 0.95) AS render_ms_p95,
               percentile_approx(render_ms, 0.99) AS render_ms_p99
        FROM {table}
        WHERE action = 'render'
        GROUP BY 1
        ORDER BY hour
    """,
    "slowest_documents": """
        SELECT source_uri, status, page_count, size_bytes, render_ms, total_ms, processed_at
        FROM {table}
        WHERE action = 'render' AND render_ms IS NOT NULL
        ORDER BY render_ms DESC
        LIMIT 20
    """,
    "latest_version_without_thumbnails": """
        SELECT source_bucket, source_key, etag, status, error_class, error_message, processed_at
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY source_bucket, source_key ORDER BY processed_at DESC) AS recency
            FROM {table}
        )
        WHERE recency = 1 AND action = 'render' AND size(thumbnails) = 0
        ORDER BY processed_at DESC
    """,
    "thumbnail_bytes_per_prefix": """
        SELECT source_bucket,
               regexp_extract(source_key, '^([^/]*/)?', 0) AS prefix,
               count(DISTINCT source_key) AS documents,
               sum(t.bytes) AS thumbnail_bytes
        FROM {table} LATERAL VIEW explode(thumbnails) AS t
        WHERE status = 'ok'
        GROUP BY source_bucket, prefix
        ORDER BY thumbnail_bytes DESC
    """,
    "documents_waiting": """
        SELECT o.source_bucket, o.source_key, o.etag, o.size_bytes, o.last_modified,
               r.status AS last_status, r.processed_at AS last_attempt
        FROM {objects} o
        LEFT JOIN (
            SELECT source_bucket, source_key, etag, status, processed_at, row_number() OVER (
                PARTITION BY source_bucket, source_key, etag ORDER BY processed_at DESC) AS recency
            FROM {table}
            WHERE action = 'render'
        ) r
        ON r.recency = 1 AND o.source_bucket = r.source_bucket AND o.source_key = r.source_key
           AND o.etag = r.etag
        WHERE r.status IS NULL OR r.status IN ({retried})
        ORDER BY o.last_modified
    """,
}
"""Named queries over the results table (see the module docstring for `{table}`)."""


def table_reference(path: str) -> str:
    """The SQL name of a Delta table stored at `path`."""
    if "`" in path:
        raise ValueError(f"a table path cannot contain a backtick: {path!r}")
    return f"delta.`{path}`"


def reference(text: str) -> str:
    """A table as SQL names it: a `[database.]table` name as it is, a path or URL as `delta.`…``.

    Relative local paths are made absolute, so a notebook and a job mean the same table.
    """
    if CATALOG_NAME.fullmatch(text):
        return text
    if "://" in text:
        return table_reference(text)
    from pathlib import Path

    return table_reference(str(Path(text).resolve()))


def run(spark: Any, name: str, table: str, objects: str = "source_objects") -> Any:
    """Run the named query against `table` (a catalog name or `table_reference(path)`).

    `objects` names the view of source objects that `documents_waiting` compares with.
    """
    if name not in QUERIES:
        raise ValueError(f"no query named {name!r}; known: {', '.join(sorted(QUERIES))}")
    return spark.sql(QUERIES[name].format(table=table, objects=objects, retried=RETRIED))


def register_source_objects(
    spark: Any,
    source: str,
    settings: S3Settings | None = None,
    view: str = "source_objects",
    suffixes: tuple[str, ...] = (".pdf",),
) -> int:
    """List the PDFs under `source` (an s3:// prefix or a folder) into the view `view`; how many.

    The listing runs on the driver, page by page, as the backfill's does; each object's version
    is its ETag (the content's MD5 for local files), the same the ledger records. Keys are kept
    when they end in one of `suffixes` (case-insensitive), the jobs' own rule; empty keeps all.
    """
    from pyspark.sql import types as T

    schema = T.StructType([
        T.StructField("source_bucket", T.StringType(), False),
        T.StructField("source_key", T.StringType(), False),
        T.StructField("etag", T.StringType(), True),
        T.StructField("size_bytes", T.LongType(), True),
        T.StructField("last_modified", T.TimestampType(), True),
    ])
    refs = list_objects(parse_location(source), settings or S3Settings.from_env())
    wanted = tuple(suffix.lower() for suffix in suffixes)
    rows = [
        (r.bucket, r.key, r.etag, r.size, r.last_modified)
        for r in refs
        if not wanted or r.key.lower().endswith(wanted)
    ]
    spark.createDataFrame(rows, schema).createOrReplaceTempView(view)
    return len(rows)
