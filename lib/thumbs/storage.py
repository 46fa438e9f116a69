"""Object storage: S3 (or any S3-compatible server) and local folders behind one small interface.

Sources and destinations are named by URL: `s3://bucket/prefix/` or a local path. A local folder
plays the part of a bucket whose name is the folder's own name, and whose ETag is the MD5 of the
content (which is what S3 reports for objects uploaded in one part), so both kinds of source give
the same document references and the same thumbnail layout.

S3 clients use the default credential chain (instance profile, web identity, environment) and
botocore's own retry modes; nothing here reads or logs credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from thumbs.keys import normalise_prefix
from thumbs.status import DocumentError, Status


@dataclass(frozen=True)
class Location:
    """A parsed source or destination: an S3 bucket and prefix, or a local folder."""

    scheme: str
    """`s3` or `file`."""
    bucket: str
    """The S3 bucket, or for a folder its name."""
    prefix: str
    """The key prefix under the bucket (S3), empty for a folder."""
    root: str = ""
    """The folder's absolute path (local only)."""

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def uri(self, key: str = "") -> str:
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix}{key}"
        return Path(self.root, key).as_uri() if key else Path(self.root).as_uri()


def parse_location(text: str) -> Location:
    """Parse `s3://bucket/prefix`, `s3a://…`, `file:///path` or a plain local path."""
    if not text:
        raise ValueError("a location must not be empty")
    for scheme in ("s3://", "s3a://", "s3n://"):
        if text.startswith(scheme):
            bucket, _, prefix = text[len(scheme) :].partition("/")
            if not bucket:
                raise ValueError(f"no bucket in {text!r}")
            return Location("s3", bucket, normalise_prefix(prefix) if prefix else "")
    path = Path(text[len("file://") :] if text.startswith("file://") else text).resolve()
    return Location("file", path.name or "root", "", str(path))


@dataclass(frozen=True)
class S3Settings:
    """How executors talk to S3; plain values so the settings pickle into Spark tasks."""

    endpoint_url: str | None = None
    region: str | None = None
    retry_mode: str = "adaptive"
    max_attempts: int = 8
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    sse_kms_key_id: str | None = None
    bucket_key_enabled: bool = True
    cache_control: str = "public, max-age=86400"

    @classmethod
    def from_env(cls, **overrides: Any) -> S3Settings:
        """Settings with the endpoint taken from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        values: dict[str, Any] = {"endpoint_url": endpoint or None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@lru_cache(maxsize=8)
def s3_client(settings: S3Settings) -> Any:
    """One client per settings per process (boto3 clients are thread-safe and costly to build)."""
    config = Config(
        retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=16,
    )
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


@dataclass(frozen=True)
class ObjectRef:
    """One source document version, as listed or announced: what executors receive, not bytes."""

    bucket: str
    key: str
    uri: str
    etag: str
    size: int
    last_modified: dt.datetime | None = None
    version_id: str | None = None


def list_objects(
    location: Location,
    settings: S3Settings,
    *,
    since: dt.datetime | None = None,
    page_size: int = 1000,
) -> Iterator[ObjectRef]:
    """Every object under a location, page by page, so memory stays flat at any bucket size."""
    if location.is_s3:
        yield from _list_s3(location, settings, since, page_size)
    else:
        yield from _list_folder(location, since)


def _list_s3(
    location: Location, settings: S3Settings, since: dt.datetime | None, page_size: int
) -> Iterator[ObjectRef]:
    paginator = s3_client(settings).get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=location.bucket, Prefix=location.prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for item in page.get("Contents", []):
            modified = item["LastModified"]
            if since is not None and modified <= since:
                continue
            key = item["Key"]
            yield ObjectRef(
                location.bucket,
                key,
                f"s3://{location.bucket}/{key}",
                item["ETag"].strip('"'),
                int(item["Size"]),
                modified,
            )


def _list_folder(location: Location, since: dt.datetime | None) -> Iterator[ObjectRef]:
    root = Path(location.root)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist")
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            modified = dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.timezone.utc)
            if since is not None and modified <= since:
                continue
            key = path.relative_to(root).as_posix()
            yield ObjectRef(
                location.bucket, key, path.as_uri(), _md5_file(path), stat.st_size, modified
            )


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(ref: ObjectRef, settings: S3Settings) -> bytes:
    """The bytes of exactly the listed version; `MISSING` if it is gone or has changed."""
    if ref.uri.startswith("s3://"):
        return _fetch_s3(ref, settings)
    path = Path(url2pathname(urlparse(ref.uri).path))
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            data = handle.read()
    except FileNotFoundError as error:
        raise DocumentError(Status.MISSING, f"{path} no longer exists", "FileNotFoundError") from error
    except PermissionError as error:
        raise DocumentError(Status.ACCESS_DENIED, f"cannot read {path}", "PermissionError") from error
    # Size and modification time stand in for the listed MD5: hashing again on every executor
    # would cost as much as a quick render, and a rewrite changes the time.
    listed = ref.last_modified.timestamp() if ref.last_modified is not None else stat.st_mtime
    if len(data) != ref.size or abs(stat.st_mtime - listed) > 0.001:
        raise DocumentError(Status.MISSING, "the file changed after it was listed", "ETagMismatch")
    return data


def _fetch_s3(ref: ObjectRef, settings: S3Settings) -> bytes:
    request: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id:
        request["VersionId"] = ref.version_id
    elif ref.etag:
        request["IfMatch"] = f'"{ref.etag}"'
    try:
        response = s3_client(settings).get_object(**request)
        data: bytes = response["Body"].read()
        return data
    except (ClientError, BotoCoreError) as error:
        raise classify_s3_error(error, f"reading s3://{ref.bucket}/{ref.key}") from error


def classify_s3_error(error: Exception, doing: str) -> DocumentError:
    """Map an S3 failure, after the SDK's own retries, to a document status."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "ClientError")
        http = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "NoSuchBucket", "NoSuchVersion") or http == 404:
            return DocumentError(Status.MISSING, f"{doing}: {code}", code)
        if code == "PreconditionFailed" or http == 412:
            return DocumentError(Status.MISSING, f"{doing}: the object changed after listing", code)
        if code in ("AccessDenied", "AllAccessDisabled", "KMS.AccessDeniedException") or http == 403:
            return DocumentError(Status.ACCESS_DENIED, f"{doing}: {code}", code)
        return DocumentError(Status.FAILED_TRANSIENT, f"{doing}: {code} (HTTP {http})", code)
    if isinstance(error, NoCredentialsError):
        return DocumentError(Status.ACCESS_DENIED, f"{doing}: no AWS credentials found", "NoCredentialsError")
    return DocumentError(Status.FAILED_TRANSIENT, f"{doing}: {error}", type(error).__name__)


class ThumbnailSink(Protocol):
    """Where thumbnails are written: one destination bucket and prefix, or a folder."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...


class S3Sink:
    """Uploads with Content-Type, Cache-Control and, when configured, SSE-KMS."""

    def __init__(self, bucket: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.settings = settings

    def put(self, key: str, data: bytes, content_type: str) -> None:
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
            "CacheControl": self.settings.cache_control,
        }
        if self.settings.sse_kms_key_id:
            request["ServerSideEncryption"] = "aws:kms"
            request["SSEKMSKeyId"] = self.settings.sse_kms_key_id
            request["BucketKeyEnabled"] = self.settings.bucket_key_enabled
        try:
            s3_client(self.settings).put_object(**request)
        except (ClientError, BotoCoreError) as error:
            raise classify_s3_error(error, f"writing s3://{self.bucket}/{key}") from error

    def delete_prefix(self, prefix: str) -> int:
        client = s3_client(self.settings)
        deleted = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted


class FolderSink:
    """Writes thumbnails under a local folder, atomically (temporary file, then rename)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise DocumentError(Status.INVALID_KEY, f"{key!r} leaves {self.root}", "KeyEscapes")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        files = [p for p in folder.iterdir() if p.is_file()]
        for path in files:
            path.unlink()
        return len(files)


def sink_for(location: Location, settings: S3Settings) -> ThumbnailSink:
    return S3Sink(location.bucket, settings) if location.is_s3 else FolderSink(location.root)
