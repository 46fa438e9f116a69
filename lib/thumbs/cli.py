"""The command-line flags both jobs share: where thumbnails and rows go, how to render, limits.

One definition, so `backfill.py` and `stream.py` take the same flags with the same defaults and
build the same `RenderOptions` and `S3Settings` from them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from thumbs.options import FORMATS, Limits, RenderOptions, parse_colour, parse_pages, parse_sizes
from thumbs.storage import S3Settings


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", default="out/thumbnails", help="s3://bucket/prefix/ or a local folder for thumbnails (default: %(default)s)")
    parser.add_argument("--table", default="out/results", help="path or s3:// URL of the Delta results table (default: %(default)s)")
    parser.add_argument("--catalog-table", metavar="NAME", help="also register the results table under this [database.]table name in the session's catalog (Glue on EMR), creating the database if needed")
    parser.add_argument("--pages", default="1", help="pages per document: a count of leading pages, or 'all' (default: %(default)s)")
    parser.add_argument("--sizes", default="256", help="longest side in pixels, comma-separated for several, e.g. 128,256,512 (default: %(default)s)")
    parser.add_argument("--format", default="webp", choices=sorted(FORMATS), help="thumbnail format (default: %(default)s)")
    parser.add_argument("--quality", type=int, default=80, help="encoder quality for webp and jpeg, 1-100 (default: %(default)s)")
    parser.add_argument("--2x", dest="retina", action="store_true", help="also write a @2x thumbnail of twice each size, for high-density screens")
    parser.add_argument("--skip-blank", action="store_true", help="when the first page is blank, start from the first page that is not (the rows record which page)")
    parser.add_argument("--background", default="#ffffff", help="colour under transparent areas, #rrggbb (default: %(default)s)")
    parser.add_argument("--max-source-bytes", type=int, default=Limits.max_source_bytes, help="skip larger sources as too_large, checked before download (default: %(default)s)")
    parser.add_argument("--max-pages", type=int, default=Limits.max_pages, help="most pages rendered per document (default: %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=Limits.max_pixels, help="most pixels in one page bitmap (default: %(default)s)")
    parser.add_argument("--timeout-seconds", type=float, default=Limits.timeout_seconds, help="wall-clock limit to render one document; past it the document ends as timeout (default: %(default)s)")
    parser.add_argument("--max-memory-mb", type=int, default=Limits.memory_bytes >> 20, help="resident memory a render child may reach; past it the document ends as too_large (default: %(default)s)")
    parser.add_argument("--recycle-after", type=int, default=Limits.recycle_after, help="documents a render child handles before it is replaced (default: %(default)s)")
    parser.add_argument("--in-process", action="store_true", help="render in the Python worker itself, without child processes (debugging only: a hostile PDF can then kill the task)")
    parser.add_argument("--io-threads", type=int, default=8, help="threads per Python worker for downloads and uploads (default: %(default)s)")
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 or AWS)")
    parser.add_argument("--sse-kms-key-id", help="write thumbnails with SSE-KMS under this key id or ARN")
    parser.add_argument("--cache-control", default=S3Settings.cache_control, help="Cache-Control of uploaded thumbnails (default: %(default)s)")


def render_options(args: argparse.Namespace) -> RenderOptions:
    """Render options and limits from the shared flags; raises `ValueError` naming a bad flag."""
    limits = Limits(
        max_source_bytes=args.max_source_bytes,
        max_pages=args.max_pages,
        max_pixels=args.max_pixels,
        timeout_seconds=args.timeout_seconds,
        memory_bytes=args.max_memory_mb << 20,
        recycle_after=args.recycle_after,
    )
    return RenderOptions(
        pages=parse_pages(args.pages),
        sizes=parse_sizes(args.sizes),
        format=args.format,
        quality=args.quality,
        background=parse_colour(args.background),
        densities=(1, 2) if args.retina else (1,),
        skip_blank=args.skip_blank,
        limits=limits,
    )


def s3_settings(args: argparse.Namespace, endpoint_url: str | None = None) -> S3Settings:
    """S3 settings from the shared flags and the environment (endpoint, SSE-KMS, caching)."""
    return S3Settings.from_env(
        endpoint_url=endpoint_url or args.s3_endpoint_url,
        sse_kms_key_id=args.sse_kms_key_id,
        cache_control=args.cache_control,
    )


def table_path(text: str) -> str:
    """A table or checkpoint location: S3 URLs as given, local paths made absolute."""
    return text if text.startswith(("s3://", "s3a://")) else str(Path(text).resolve())


def optional(check: Callable[[str], str], value: str | None) -> str | None:
    """`value` passed through `check` when the flag was given, None when it was not.

    An empty value (an unset variable in a deploy script, say) is checked, and so refused,
    rather than read as "not given".
    """
    return None if value is None else check(value)
