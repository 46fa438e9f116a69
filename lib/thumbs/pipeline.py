"""The rendering step both jobs share: document references in, one result row each out.

`render_partitions` is the `mapInPandas` function. Each executor task fetches its documents
itself, renders them, uploads the thumbnails and returns rows in the ledger's schema. Nothing a
document does is allowed to fail the task: every outcome becomes a row with a status.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from thumbs.keys import thumbnail_key
from thumbs.ledger import RESULT_SCHEMA
from thumbs.logs import configure_logging
from thumbs.options import FORMATS, RenderOptions
from thumbs.render import Rendering, render_document
from thumbs.status import DocumentError, Status
from thumbs.storage import Location, ObjectRef, S3Settings, ThumbnailSink, fetch, sink_for

log = logging.getLogger("thumbs.pipeline")

MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class JobContext:
    """Everything a task needs besides its documents; pickled once into each task."""

    options: RenderOptions
    dest: Location
    s3: S3Settings
    job: str
    run_id: str


def process_document(
    ref: ObjectRef, batch_id: int, ctx: JobContext, sink: ThumbnailSink, sequencer: str | None = None
) -> dict[str, Any]:
    """Fetch, render and upload one document; return its result row. Never raises."""
    started = time.perf_counter()
    row = _base_row(ref, batch_id, ctx, sequencer)
    try:
        _check_before_fetch(ref, ctx)
        fetch_start = time.perf_counter()
        data = fetch(ref, ctx.s3)
        row["fetch_ms"] = _ms_since(fetch_start)
        if len(data) > ctx.options.limits.max_source_bytes:
            raise DocumentError(Status.TOO_LARGE, f"{len(data)} bytes is over the limit", "ByteLimit")
        rendering = render_document(data, ctx.options)
        row["page_count"] = rendering.page_count
        row["render_ms"] = sum(rendering.timings.values()) * 1000
        upload_start = time.perf_counter()
        row["thumbnails"] = _upload(ref, rendering, ctx, sink)
        row["upload_ms"] = _ms_since(upload_start)
        row["status"] = Status.OK.value
    except DocumentError as error:
        row.update(status=error.status.value, error_class=error.error_class)
        row["error_message"] = error.message[:MAX_MESSAGE_CHARS]
        log.warning(
            "document failed run=%s batch=%s uri=%s status=%s error_class=%s message=%s",
            ctx.run_id, batch_id, ref.uri, error.status.value, error.error_class, error.message,
        )
    except Exception as error:  # noqa: BLE001 - a defect must cost one row, not the task
        row.update(status=Status.INTERNAL_ERROR.value, error_class=type(error).__name__)
        row["error_message"] = str(error)[:MAX_MESSAGE_CHARS]
        log.exception("document internal error run=%s batch=%s uri=%s", ctx.run_id, batch_id, ref.uri)
    row["total_ms"] = _ms_since(started)
    return row


def _check_before_fetch(ref: ObjectRef, ctx: JobContext) -> None:
    limit = ctx.options.limits.max_source_bytes
    if ref.size > limit:
        raise DocumentError(
            Status.TOO_LARGE, f"{ref.size} bytes is over the limit of {limit}", "ByteLimit"
        )
    # The longest name this document could get: fail before spending a render on it.
    thumbnail_key(ctx.dest.prefix, ref.bucket, ref.key, 10**6, 10**4, ctx.options.format)


def _upload(
    ref: ObjectRef, rendering: Rendering, ctx: JobContext, sink: ThumbnailSink
) -> list[dict[str, Any]]:
    written = []
    for thumb in rendering.thumbnails:
        key = thumbnail_key(ctx.dest.prefix, ref.bucket, ref.key, thumb.page, thumb.size, thumb.format)
        sink.put(key, thumb.data, FORMATS[thumb.format])
        written.append(
            {
                "key": key,
                "page": thumb.page,
                "size": thumb.size,
                "width": thumb.width,
                "height": thumb.height,
                "format": thumb.format,
                "bytes": len(thumb.data),
            }
        )
    return written


def _base_row(ref: ObjectRef, batch_id: int, ctx: JobContext, sequencer: str | None) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "source_bucket": ref.bucket,
        "source_key": ref.key,
        "source_uri": ref.uri,
        "etag": ref.etag,
        "version_id": ref.version_id,
        "sequencer": sequencer,
        "size_bytes": ref.size,
        "last_modified": ref.last_modified,
        "action": "render",
        "status": Status.INTERNAL_ERROR.value,
        "error_class": None,
        "error_message": None,
        "page_count": None,
        "thumbnail_root": ctx.dest.uri(),
        "thumbnails": [],
        "fetch_ms": None,
        "render_ms": None,
        "upload_ms": None,
        "total_ms": 0.0,
        "job": ctx.job,
        "job_run_id": ctx.run_id,
        "batch_id": batch_id,
        "processed_at": now,
        "processed_date": now.date(),
    }


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def render_partitions(ctx: JobContext) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The `mapInPandas` function: reference batches in, result-row batches out."""

    def render(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        configure_logging()
        sink = sink_for(ctx.dest, ctx.s3)
        for batch in batches:
            rows = [
                process_document(_ref_from(record), int(record["batch_id"]), ctx, sink, record["sequencer"])
                for record in batch.to_dict("records")
            ]
            yield pd.DataFrame(rows, columns=_RESULT_COLUMNS)

    return render


def _ref_from(record: dict[str, Any]) -> ObjectRef:
    modified = record.get("last_modified")
    return ObjectRef(
        bucket=record["source_bucket"],
        key=record["source_key"],
        uri=record["source_uri"],
        etag=record["etag"],
        size=int(record["size_bytes"]),
        last_modified=None if modified is None or pd.isna(modified) else modified,
        version_id=_none_if_missing(record.get("version_id")),
    )


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


_RESULT_COLUMNS = RESULT_SCHEMA.fieldNames()
