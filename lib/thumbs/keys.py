"""Where a document's thumbnails live: deterministic keys a web application can compute.

Layout, under the destination prefix:

    {dest}/{bucket}/{source key, each segment encoded}/p{page}-{size}[@2x].{ext}

for example `s3://docs/2024/Q1 report.pdf`, page 1 at 256 px in WebP, lands at
`{dest}/docs/2024/Q1%20report.pdf/p1-256.webp`.

Each `/`-separated segment of the source key is encoded like JavaScript's `encodeURIComponent`
(UTF-8, percent-encoded, leaving `A-Z a-z 0-9 - _ . ! ~ * ' ( )`). Three segments that a path
would interpret are rewritten so no source key can climb out of the destination prefix or land
on another key's thumbnails: an empty segment becomes `%2F`, `.` becomes `%2E` and `..` becomes
`%2E%2E` (encoding never produces `%2F` or a lone `%2E` from a real segment, so the mapping stays
one-to-one). The same source key always yields the same thumbnail key, so a re-run overwrites.
"""

from __future__ import annotations

from urllib.parse import quote

from thumbs.options import EXTENSIONS
from thumbs.status import DocumentError, Status

MAX_KEY_BYTES = 1024
"""S3's limit on the length of an object key, in UTF-8 bytes."""

_SAFE = "-_.!~*'()"
_SPECIAL_SEGMENTS = {"": "%2F", ".": "%2E", "..": "%2E%2E"}


def encode_segment(segment: str) -> str:
    """Encode one path segment of a source key (or a bucket name) for use in a thumbnail key."""
    special = _SPECIAL_SEGMENTS.get(segment)
    if special is not None:
        return special
    return quote(segment, safe=_SAFE, encoding="utf-8", errors="surrogatepass")


def document_prefix(dest_prefix: str, bucket: str, key: str) -> str:
    """The key prefix holding every thumbnail of one source document, ending in `/`."""
    parts = [encode_segment(bucket)] + [encode_segment(s) for s in key.split("/")]
    return normalise_prefix(dest_prefix) + "/".join(parts) + "/"


def thumbnail_name(page: int, size: int, fmt: str, density: int = 1) -> str:
    """The file name of one thumbnail in its document prefix: `p1-256.webp`, `p1-256@2x.webp`."""
    suffix = "" if density == 1 else f"@{density}x"
    return f"p{page}-{size}{suffix}.{EXTENSIONS[fmt]}"


def thumbnail_key(
    dest_prefix: str, bucket: str, key: str, page: int, size: int, fmt: str, density: int = 1
) -> str:
    """The full key of one thumbnail; raises `DocumentError(INVALID_KEY)` past S3's key limit."""
    full = document_prefix(dest_prefix, bucket, key) + thumbnail_name(page, size, fmt, density)
    if len(full.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise DocumentError(
            Status.INVALID_KEY,
            f"thumbnail key would be {len(full)} characters, over S3's {MAX_KEY_BYTES} bytes",
            "KeyTooLong",
        )
    return full


def normalise_prefix(prefix: str) -> str:
    """A destination prefix with no leading `/` and exactly one trailing `/` (or empty)."""
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""
