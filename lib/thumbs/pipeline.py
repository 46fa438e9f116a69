"""The rendering step both jobs share: document references in, one result row each out.

`render_partitions` is the `mapInPandas` function. Each executor task fetches its documents
itself, renders them, uploads the thumbnails and returns rows in the ledger's schema. Nothing a
document does is allowed to fail the task: every outcome becomes a row with a status.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from thumbs.isolation import RenderPool
from thumbs.keys import document_prefix, thumbnail_key
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
    isolate: bool = True
    """Render in child processes (see `thumbs.isolation`); off only for tests and benchmarks."""
    io_threads: int = 8
    """Threads per Python worker for downloads and uploads, which overlap with rendering."""
    prefetch: int = 4
    """Documents fetched ahead of the one rendering; bounds the worker's memory for sources."""


Renderer = Callable[[bytes], Rendering]
PartitionFunction = Callable[[Iterable[pd.DataFrame]], Iterable[pd.DataFrame]]
"""What `mapInPandas` takes: pandas batches of one partition in, result batches out."""


class _Document:
    """One document's way through fetch, render and upload, building its result row."""

    def __init__(self, ref: ObjectRef, batch_id: int, ctx: JobContext, sequencer: str | None) -> None:
        self.ref = ref
        self.ctx = ctx
        self.batch_id = batch_id
        self.started = time.perf_counter()
        self.row = _base_row(ref, batch_id, ctx, sequencer)
        self.data: bytes | None = None
        self.rendering: Rendering | None = None
        self.failed = False

    def fetch(self) -> None:
        with self.guarded():
            _check_before_fetch(self.ref, self.ctx)
            start = time.perf_counter()
            self.data = fetch(self.ref, self.ctx.s3)
            self.row["fetch_ms"] = _ms_since(start)
            limit = self.ctx.options.limits.max_source_bytes
            if len(self.data) > limit:
                raise DocumentError(
                    Status.TOO_LARGE, f"{len(self.data)} bytes is over the limit of {limit}", "ByteLimit"
                )

    def render(self, renderer: Renderer) -> None:
        if self.failed or self.data is None:
            return
        if isinstance(renderer, RenderPool):
            renderer.prepare()  # a new or recycled child's start-up is no document's render time
        with self.guarded():
            start = time.perf_counter()
            try:
                self.rendering = renderer(self.data)
            finally:
                self.row["render_ms"] = _ms_since(start)
                self.data = None
            self.row["page_count"] = self.rendering.page_count

    def upload(self, sink: ThumbnailSink) -> None:
        if self.failed or self.rendering is None:
            return
        with self.guarded():
            start = time.perf_counter()
            self.row["thumbnails"] = _upload(self.ref, self.rendering, self.ctx, sink)
            self.row["upload_ms"] = _ms_since(start)
            self.row["status"] = Status.OK.value
            self.rendering = None

    def finish(self) -> dict[str, Any]:
        self.row["total_ms"] = _ms_since(self.started)
        return self.row

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Turn any failure into the row's status; nothing escapes to fail the task."""
        try:
            yield
        except DocumentError as error:
            self._fail(error.status.value, error.error_class, error.message)
            log.warning(
                "document failed run=%s batch=%s uri=%s status=%s error_class=%s message=%s",
                self.ctx.run_id, self.batch_id, self.ref.uri, error.status.value,
                error.error_class, error.message,
            )
        except Exception as error:  # noqa: BLE001 - a defect must cost one row, not the task
            self._fail(Status.INTERNAL_ERROR.value, type(error).__name__, str(error))
            log.exception(
                "document internal error run=%s batch=%s uri=%s",
                self.ctx.run_id, self.batch_id, self.ref.uri,
            )

    def _fail(self, status: str, error_class: str, message: str) -> None:
        self.failed = True
        self.row.update(status=status, error_class=error_class, thumbnails=[])
        self.row["error_message"] = message[:MAX_MESSAGE_CHARS]


def process_document(
    ref: ObjectRef,
    batch_id: int,
    ctx: JobContext,
    sink: ThumbnailSink,
    sequencer: str | None = None,
    renderer: Renderer | None = None,
) -> dict[str, Any]:
    """Fetch, render and upload one document, one step after the other; return its result row."""
    document = _Document(ref, batch_id, ctx, sequencer)
    document.fetch()
    document.render(renderer or in_process_renderer(ctx.options))
    document.upload(sink)
    return document.finish()


def process_documents(
    documents: list[_Document], sink: ThumbnailSink, renderer: Renderer, io: ThreadPoolExecutor, window: int
) -> list[dict[str, Any]]:
    """Render documents in order on this thread while threads fetch ahead and upload behind.

    Rendering is the CPU work and stays on one thread (pdfium is not thread-safe, and the
    children are the isolation boundary); downloads and uploads wait on the network, so up to
    `window` of each run alongside it.
    """
    pending = iter(documents)
    fetching: deque[tuple[_Document, Future[None]]] = deque()
    uploading: deque[tuple[_Document, Future[None]]] = deque()
    rows = []

    def fetch_ahead() -> None:
        while len(fetching) < window and (document := next(pending, None)) is not None:
            fetching.append((document, io.submit(document.fetch)))

    fetch_ahead()
    while fetching:
        document, fetched = fetching.popleft()
        fetched.result()
        fetch_ahead()
        document.render(renderer)
        uploading.append((document, io.submit(document.upload, sink)))
        while len(uploading) > window or (uploading and not fetching):
            done, uploaded = uploading.popleft()
            uploaded.result()
            rows.append(done.finish())
    return rows


def _check_before_fetch(ref: ObjectRef, ctx: JobContext) -> None:
    limit = ctx.options.limits.max_source_bytes
    if ref.size > limit:
        raise DocumentError(
            Status.TOO_LARGE, f"{ref.size} bytes is over the limit of {limit}", "ByteLimit"
        )
    # The longest name this document could get: fail before spending a render on it.
    thumbnail_key(ctx.dest.prefix, ref.bucket, ref.key, 10**6, 10**4, ctx.options.format, 3)


def _upload(
    ref: ObjectRef, rendering: Rendering, ctx: JobContext, sink: ThumbnailSink
) -> list[dict[str, Any]]:
    written = []
    for thumb in rendering.thumbnails:
        key = thumbnail_key(
            ctx.dest.prefix, ref.bucket, ref.key, thumb.page, thumb.size, thumb.format, thumb.density
        )
        sink.put(key, thumb.data, FORMATS[thumb.format])
        written.append(
            {
                "key": key,
                "page": thumb.page,
                "size": thumb.size,
                "density": thumb.density,
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


def in_process_renderer(options: RenderOptions) -> Renderer:
    return lambda data: render_document(data, options)


_POOLS: dict[RenderOptions, RenderPool] = {}


def pooled_renderer(options: RenderOptions) -> Renderer:
    """A renderer backed by this process's pool for these options, started on first use.

    Spark reuses Python workers across tasks, so the children outlive a task and their start-up
    cost is paid once per worker. They end with the worker (they exit when their input closes).
    """
    pool = _POOLS.get(options)
    if pool is None:
        pool = _POOLS[options] = RenderPool(options)
        atexit.register(pool.close)
    return pool


def render_partitions(ctx: JobContext) -> PartitionFunction:
    """The `mapInPandas` function: reference batches in, result-row batches out."""

    def render(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        configure_logging()
        sink = sink_for(ctx.dest, ctx.s3)
        renderer = pooled_renderer(ctx.options) if ctx.isolate else in_process_renderer(ctx.options)
        with ThreadPoolExecutor(ctx.io_threads, thread_name_prefix="thumbs-io") as io:
            for batch in batches:
                documents = [
                    _Document(_ref_from(record), int(record["batch_id"]), ctx, record["sequencer"])
                    for record in batch.to_dict("records")
                ]
                rows = process_documents(documents, sink, renderer, io, ctx.prefetch)
                yield pd.DataFrame(rows, columns=_RESULT_COLUMNS)

    return render


def _ref_from(record: dict[Any, Any]) -> ObjectRef:
    modified = record.get("last_modified")
    size = record.get("size_bytes")
    return ObjectRef(
        bucket=record["source_bucket"],
        key=record["source_key"],
        uri=record["source_uri"],
        etag=_none_if_missing(record["etag"]) or "",
        size=0 if size is None or pd.isna(size) else int(size),
        last_modified=None if modified is None or pd.isna(modified) else modified,
        version_id=_none_if_missing(record.get("version_id")),
    )


def delete_partitions(ctx: JobContext) -> PartitionFunction:
    """The `mapInPandas` function for removed sources: delete their thumbnails, one row each."""

    def delete(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        configure_logging()
        sink = sink_for(ctx.dest, ctx.s3)
        for batch in batches:
            rows = [_delete_document(record, ctx, sink) for record in batch.to_dict("records")]
            yield pd.DataFrame(rows, columns=_RESULT_COLUMNS)

    return delete


def _delete_document(record: dict[Any, Any], ctx: JobContext, sink: ThumbnailSink) -> dict[str, Any]:
    document = _Document(_ref_from(record), int(record["batch_id"]), ctx, record["sequencer"])
    document.row["action"] = "delete"
    with document.guarded():
        start = time.perf_counter()
        prefix = document_prefix(ctx.dest.prefix, document.ref.bucket, document.ref.key)
        removed = sink.delete_prefix(prefix)
        document.row["upload_ms"] = _ms_since(start)
        document.row["status"] = Status.DELETED.value
        log.info(
            "document deleted run=%s batch=%s uri=%s thumbnails_removed=%d",
            ctx.run_id, document.batch_id, document.ref.uri, removed,
        )
    return document.finish()


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


_RESULT_COLUMNS = RESULT_SCHEMA.fieldNames()
