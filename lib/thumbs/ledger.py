"""The results ledger: one Delta table, one row per document version and outcome.

The schema below is the product's public contract (documented in the README). Rows are only ever
appended; a document's current state is its latest row. Both jobs write here, and appends from
several applications at once are safe (on S3 that needs Delta's DynamoDB log store, see README).
The table lives at a path; `register_table` also gives it a name in the session's catalog (Glue
on EMR), for tools that query by name.
"""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from thumbs.status import FINAL_STATUSES, Status

SCHEMA_VERSION = 1

# Delta cannot enforce NOT NULL inside arrays, so the nested fields are declared nullable.
THUMBNAIL_TYPE = T.StructType(
    [
        T.StructField("key", T.StringType(), True),
        T.StructField("page", T.IntegerType(), True),
        T.StructField("size", T.IntegerType(), True),
        T.StructField("density", T.IntegerType(), True),
        T.StructField("width", T.IntegerType(), True),
        T.StructField("height", T.IntegerType(), True),
        T.StructField("format", T.StringType(), True),
        T.StructField("bytes", T.LongType(), True),
    ]
)

RESULT_SCHEMA = T.StructType(
    [
        T.StructField("source_bucket", T.StringType(), False),
        T.StructField("source_key", T.StringType(), False),
        T.StructField("source_uri", T.StringType(), False),
        T.StructField("etag", T.StringType(), True),
        T.StructField("version_id", T.StringType(), True),
        T.StructField("sequencer", T.StringType(), True),
        T.StructField("size_bytes", T.LongType(), True),
        T.StructField("last_modified", T.TimestampType(), True),
        T.StructField("action", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("error_class", T.StringType(), True),
        T.StructField("error_message", T.StringType(), True),
        T.StructField("page_count", T.IntegerType(), True),
        T.StructField("thumbnail_root", T.StringType(), False),
        T.StructField("thumbnails", T.ArrayType(THUMBNAIL_TYPE, True), False),
        T.StructField("fetch_ms", T.DoubleType(), True),
        T.StructField("render_ms", T.DoubleType(), True),
        T.StructField("upload_ms", T.DoubleType(), True),
        T.StructField("total_ms", T.DoubleType(), False),
        T.StructField("job", T.StringType(), False),
        T.StructField("job_run_id", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("processed_at", T.TimestampType(), False),
        T.StructField("processed_date", T.DateType(), False),
    ]
)
"""One row per document version per attempt. See the README for each column's meaning."""

REF_COLUMNS = [
    "source_bucket",
    "source_key",
    "source_uri",
    "etag",
    "version_id",
    "sequencer",
    "size_bytes",
    "last_modified",
    "batch_id",
]
"""The document references both jobs hand to the renderer, a prefix of the result columns."""

REF_SCHEMA = T.StructType([RESULT_SCHEMA[name] for name in REF_COLUMNS])

VERSION_KEY = ["source_bucket", "source_key", "etag"]

NAME_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""One part of a catalog name: what Glue and Spark both accept without quoting."""


def ensure_table(spark: SparkSession, path: str) -> None:
    """Create the results table at `path` if it does not exist yet (safe to race)."""
    from delta.tables import DeltaTable

    (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(RESULT_SCHEMA)
        .partitionedBy("processed_date")
        .property("thumbs.schemaVersion", str(SCHEMA_VERSION))
        .comment("PDF thumbnail results: one row per document version and outcome")
        .execute()
    )


def read(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.format("delta").load(path)


def table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def done_versions(spark: SparkSession, path: str, *, retry_failed: bool = False) -> DataFrame:
    """Document versions that need no more work: rendered, or failed for good.

    With `retry_failed`, only successful versions count as done, so permanent failures are
    tried again (after a pdfium upgrade, say).
    """
    statuses = [Status.OK.value] if retry_failed else sorted(s.value for s in FINAL_STATUSES)
    if not table_exists(spark, path):
        return spark.createDataFrame([], T.StructType([RESULT_SCHEMA[c] for c in VERSION_KEY]))
    return (
        read(spark, path)
        .where(F.col("action") == "render")
        .where(F.col("status").isin(statuses))
        .select(*VERSION_KEY)
        .distinct()
    )


def append(results: DataFrame, path: str, *, txn: tuple[str, int] | None = None) -> None:
    """Append result rows; with `txn=(app_id, version)` Delta commits each version once only."""
    writer = results.write.format("delta").mode("append")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(path)


def status_counts(spark: SparkSession, path: str, condition: Column) -> dict[str, int]:
    """Rows per status among those matching `condition`, read back from the table."""
    rows = read(spark, path).where(condition).groupBy("status").count().collect()
    return {row["status"]: int(row["count"]) for row in rows}


def check_table_name(name: str) -> str:
    """`name` if it is `[catalog.][database.]table` of plain identifiers; else `ValueError`."""
    parts = name.split(".")
    if len(parts) > 3 or not all(NAME_PART.fullmatch(part) for part in parts):
        raise ValueError(
            f"catalog table name must be [catalog.][database.]table, each part letters, digits "
            f"and underscores not starting with a digit, got {name!r}"
        )
    return name


def register_table(spark: SparkSession, name: str, path: str) -> str:
    """Register the Delta table at `path` as `name`, creating its database; returns its location.

    The table stays external: the catalog only points at `path`, so dropping the name never
    deletes rows. An existing name is left as it is, and the location returned is the one the
    catalog holds, which the caller compares with `path`. Both values go into SQL text, so
    the name must pass `check_table_name` and the path may not contain quotes or backslashes.
    """
    parts = check_table_name(name).split(".")
    if not path or any(char in path for char in "'\"\\`"):
        raise ValueError(f"a table path for the catalog must not contain quotes, got {path!r}")
    quoted = [f"`{part}`" for part in parts]
    if len(parts) > 1:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {'.'.join(quoted[:-1])}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {'.'.join(quoted)} USING DELTA LOCATION '{path}'")
    details = spark.sql(f"DESCRIBE TABLE EXTENDED {'.'.join(quoted)}")
    location = details.where(F.col("col_name") == "Location").first()
    return "" if location is None else str(location["data_type"])


def same_location(catalog_location: str, path: str) -> bool:
    """Whether a catalog's location names `path`, ignoring `file:` and `s3a:` spellings."""

    def plain(text: str) -> str:
        text = re.sub(r"^file:(//)?", "", text)
        return re.sub(r"^s3[an]://", "s3://", text).rstrip("/")

    return plain(catalog_location) == plain(path)
