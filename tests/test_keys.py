"""Thumbnail keys: deterministic, computable by a web app, and unable to escape the prefix."""

from __future__ import annotations

import posixpath

import pytest

from thumbs.keys import MAX_KEY_BYTES, document_prefix, encode_segment, thumbnail_key
from thumbs.status import DocumentError, Status

TRICKY_KEYS = [
    "plain.pdf",
    "2024/Q1 report.pdf",
    "2024/a+b.pdf",
    "2024/a%2Bb.pdf",
    "résumé/naïve 文件.pdf",
    "../../etc/passwd.pdf",
    "a/./b.pdf",
    "a/../b.pdf",
    "/leading.pdf",
    "double//slash.pdf",
    "trailing/",
    "%2E%2E/x.pdf",
    "deep/" * 20 + "x.pdf",
]


def test_layout_puts_bucket_then_encoded_key_then_page_and_size() -> None:
    key = thumbnail_key("previews/", "docs", "2024/Q1 report.pdf", 1, 256, "webp")
    assert key == "previews/docs/2024/Q1%20report.pdf/p1-256.webp"


def test_formats_get_their_usual_extension() -> None:
    assert thumbnail_key("", "b", "k.pdf", 3, 128, "jpeg").endswith("/p3-128.jpg")
    assert thumbnail_key("", "b", "k.pdf", 3, 128, "png").endswith("/p3-128.png")


def test_high_density_thumbnails_carry_an_at_2x_suffix() -> None:
    assert thumbnail_key("", "b", "k.pdf", 1, 256, "webp", 2) == "b/k.pdf/p1-256@2x.webp"


def test_segments_are_encoded_like_encode_uri_component() -> None:
    assert encode_segment("a+b c") == "a%2Bb%20c"
    assert encode_segment("naïve") == "na%C3%AFve"
    assert encode_segment("it's (1)!~*") == "it's (1)!~*".replace(" ", "%20")


@pytest.mark.parametrize("source_key", TRICKY_KEYS)
def test_no_source_key_escapes_the_destination_prefix(source_key: str) -> None:
    key = thumbnail_key("previews/", "docs", source_key, 1, 256, "webp")
    normalised = posixpath.normpath(key)
    assert normalised.startswith("previews/docs/")
    assert ".." not in key.split("/")
    assert "" not in key.split("/")
    assert "." not in key.split("/")


def test_distinct_source_keys_never_share_thumbnails() -> None:
    prefixes = {document_prefix("p/", "docs", key) for key in TRICKY_KEYS}
    assert len(prefixes) == len(TRICKY_KEYS)


def test_prefix_slashes_are_normalised() -> None:
    assert document_prefix("/a/b//", "docs", "x.pdf") == "a/b/docs/x.pdf/"
    assert document_prefix("", "docs", "x.pdf") == "docs/x.pdf/"


def test_keys_past_the_s3_limit_are_a_typed_error() -> None:
    with pytest.raises(DocumentError) as caught:
        thumbnail_key("", "docs", "x" * MAX_KEY_BYTES, 1, 256, "webp")
    assert caught.value.status is Status.INVALID_KEY
