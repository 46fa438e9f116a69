"""Locations, listing, fetching and writing, against folders and a real S3-compatible server."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from thumbs.status import DocumentError, Status
from thumbs.storage import (
    FolderSink,
    Location,
    ObjectRef,
    S3Settings,
    S3Sink,
    fetch,
    list_objects,
    parse_location,
)


class TestLocations:
    def test_s3_urls_split_into_bucket_and_prefix(self) -> None:
        assert parse_location("s3://docs/2024/q1") == Location("s3", "docs", "2024/q1/")
        assert parse_location("s3a://docs") == Location("s3", "docs", "")

    def test_a_folder_is_a_bucket_named_after_it(self, tmp_path: Path) -> None:
        location = parse_location(str(tmp_path / "inbox"))
        assert (location.scheme, location.bucket, location.root) == (
            "file", "inbox", str(tmp_path / "inbox")
        )

    def test_an_s3_url_needs_a_bucket(self) -> None:
        with pytest.raises(ValueError, match="no bucket"):
            parse_location("s3:///key")


class TestFolders:
    def test_listing_walks_subfolders_with_md5_etags(self, tmp_path: Path) -> None:
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "b" / "x.pdf").write_bytes(b"%PDF-x")
        (tmp_path / "y.pdf").write_bytes(b"%PDF-y")
        refs = list(list_objects(parse_location(str(tmp_path)), S3Settings()))
        assert [(r.bucket, r.key, r.size) for r in refs] == [
            (tmp_path.name, "y.pdf", 6), (tmp_path.name, "a/b/x.pdf", 6)
        ]
        assert refs[0].etag == hashlib.md5(b"%PDF-y").hexdigest()

    def test_since_keeps_only_newer_files(self, tmp_path: Path) -> None:
        (tmp_path / "old.pdf").write_bytes(b"old")
        (tmp_path / "new.pdf").write_bytes(b"new")
        os.utime(tmp_path / "old.pdf", (1_000_000_000, 1_000_000_000))
        since = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        keys = [r.key for r in list_objects(parse_location(str(tmp_path)), S3Settings(), since=since)]
        assert keys == ["new.pdf"]

    def test_a_file_changed_after_listing_is_missing(self, tmp_path: Path) -> None:
        (tmp_path / "x.pdf").write_bytes(b"first")
        (ref,) = list_objects(parse_location(str(tmp_path)), S3Settings())
        (tmp_path / "x.pdf").write_bytes(b"second")
        with pytest.raises(DocumentError) as caught:
            fetch(ref, S3Settings())
        assert caught.value.status is Status.MISSING

    def test_the_folder_sink_writes_atomically_and_deletes_a_prefix(self, tmp_path: Path) -> None:
        sink = FolderSink(str(tmp_path))
        sink.put("docs/x.pdf/p1-256.webp", b"image", "image/webp")
        assert (tmp_path / "docs/x.pdf/p1-256.webp").read_bytes() == b"image"
        assert [p.name for p in (tmp_path / "docs/x.pdf").iterdir()] == ["p1-256.webp"]
        assert sink.delete_prefix("docs/x.pdf/") == 1

    def test_the_folder_sink_refuses_keys_that_leave_it(self, tmp_path: Path) -> None:
        with pytest.raises(DocumentError) as caught:
            FolderSink(str(tmp_path / "out")).put("../escape", b"x", "image/webp")
        assert caught.value.status is Status.INVALID_KEY


class TestS3:
    def test_listing_follows_continuation_pages(
        self, s3: Any, bucket: str, s3_settings: S3Settings
    ) -> None:
        for index in range(7):
            s3.put_object(Bucket=bucket, Key=f"in/{index}.pdf", Body=b"%PDF-")
        s3.put_object(Bucket=bucket, Key="elsewhere/x.pdf", Body=b"%PDF-")
        location = parse_location(f"s3://{bucket}/in/")
        refs = list(list_objects(location, s3_settings, page_size=2))
        assert sorted(r.key for r in refs) == [f"in/{i}.pdf" for i in range(7)]
        assert refs[0].etag == hashlib.md5(b"%PDF-").hexdigest()
        assert refs[0].uri == f"s3://{bucket}/{refs[0].key}"

    def test_fetch_reads_exactly_the_listed_version(
        self, s3: Any, bucket: str, s3_settings: S3Settings
    ) -> None:
        s3.put_object(Bucket=bucket, Key="x.pdf", Body=b"%PDF-one")
        (ref,) = list_objects(parse_location(f"s3://{bucket}/"), s3_settings)
        assert fetch(ref, s3_settings) == b"%PDF-one"
        s3.put_object(Bucket=bucket, Key="x.pdf", Body=b"%PDF-two")
        with pytest.raises(DocumentError) as caught:
            fetch(ref, s3_settings)
        assert caught.value.status is Status.MISSING

    def test_fetching_a_deleted_object_is_missing(self, bucket: str, s3_settings: S3Settings) -> None:
        ref = ObjectRef(bucket, "gone.pdf", f"s3://{bucket}/gone.pdf", "abc", 10)
        with pytest.raises(DocumentError) as caught:
            fetch(ref, s3_settings)
        assert (caught.value.status, caught.value.error_class) == (Status.MISSING, "NoSuchKey")

    def test_uploads_carry_content_type_and_cache_control(
        self, s3: Any, bucket: str, s3_settings: S3Settings
    ) -> None:
        S3Sink(bucket, s3_settings).put("t/p1-256.webp", b"RIFF", "image/webp")
        head = s3.head_object(Bucket=bucket, Key="t/p1-256.webp")
        assert head["ContentType"] == "image/webp"
        assert head["CacheControl"] == S3Settings.cache_control
        assert "ServerSideEncryption" not in head or head["ServerSideEncryption"] != "aws:kms"

    def test_uploads_can_request_sse_kms(self, s3: Any, bucket: str, s3_server: str) -> None:
        import boto3

        kms = boto3.client("kms", endpoint_url=s3_server, region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["Arn"]
        settings = S3Settings(endpoint_url=s3_server, region="us-east-1", sse_kms_key_id=key_id)
        S3Sink(bucket, settings).put("t/p1-256.webp", b"RIFF", "image/webp")
        head = s3.head_object(Bucket=bucket, Key="t/p1-256.webp")
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_id
        assert head["BucketKeyEnabled"] is True

    def test_delete_prefix_removes_only_that_document(
        self, s3: Any, bucket: str, s3_settings: S3Settings
    ) -> None:
        for key in ("d/a.pdf/p1-256.webp", "d/a.pdf/p2-256.webp", "d/a.pdf.bak/p1-256.webp"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert S3Sink(bucket, s3_settings).delete_prefix("d/a.pdf/") == 2
        left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert left == ["d/a.pdf.bak/p1-256.webp"]
