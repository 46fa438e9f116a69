"""The questions people ask of the results table, as SQL, in one place.

Each query is a template over `{table}`: a catalog name (`thumbs.results`) or a path wrapped as
``delta.`s3://lake/thumbnail_results` ``. `run(spark, name, table)` fills it in and returns a
DataFrame; `table_reference(path)` makes the path form. The README shows the first one, the tests
run them all against a table built by a real backfill.
"""

from __future__ import annotations

from typing import Any

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
}
"""Named queries over the results table (see the module docstring for `{table}`)."""


def table_reference(path: str) -> str:
    """The SQL name of a Delta table stored at `path`."""
    if "`" in path:
        raise ValueError(f"a table path cannot contain a backtick: {path!r}")
    return f"delta.`{path}`"


def run(spark: Any, name: str, table: str) -> Any:
    """Run the named query against `table` (a catalog name or `table_reference(path)`)."""
    if name not in QUERIES:
        raise ValueError(f"no query named {name!r}; known: {', '.join(sorted(QUERIES))}")
    return spark.sql(QUERIES[name].format(table=table))
