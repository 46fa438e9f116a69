"""S3 upload events as they arrive on Kafka: S3 event notifications and EventBridge events.

One Kafka message can hold several records (S3 notifications batch them), or none (the
`s3:TestEvent` S3 sends when a notification is configured), or be malformed. `parse_message`
turns one message into a list of `Event`s, each of kind `created`, `removed`, `test` or
`malformed`; a malformed message keeps its reason so it can be quarantined and replayed.

Keys in S3 notifications are form-URL-encoded (a space arrives as `+`, a plus as `%2B`); keys in
EventBridge events are not encoded. Both carry a `sequencer`: hexadecimal, ordering events for
one key when compared after left-padding to the same length.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

MAX_MESSAGE_BYTES = 256 << 10
"""Messages larger than this are malformed: a genuine S3 event is a few kilobytes."""

SEQUENCER_WIDTH = 32


@dataclass(frozen=True)
class Event:
    """One object event, or one unusable message."""

    kind: str
    """`created`, `removed`, `test` (acknowledged, ignored) or `malformed`."""
    event_name: str | None = None
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    size: int | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_time: dt.datetime | None = None
    reason: str | None = None


def parse_message(value: bytes | None) -> list[Event]:
    """Every event in one Kafka message value; never raises."""
    if value is None:
        return [_malformed("the message has no value")]
    if len(value) > MAX_MESSAGE_BYTES:
        return [_malformed(f"the message is {len(value)} bytes, over {MAX_MESSAGE_BYTES}")]
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return [_malformed(f"not JSON: {error}")]
    if not isinstance(document, dict):
        return [_malformed(f"a JSON {type(document).__name__}, not an object")]
    try:
        if "Records" in document:
            return _s3_notification(document)
        if document.get("Event") == "s3:TestEvent":
            return [Event("test", event_name="s3:TestEvent", bucket=document.get("Bucket"))]
        if document.get("source") == "aws.s3" and "detail" in document:
            return [_eventbridge(document)]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [_malformed(f"an S3 event with a missing or wrong field: {error!r}")]
    return [_malformed("neither an S3 event notification nor an EventBridge S3 event")]


def _malformed(reason: str) -> Event:
    return Event("malformed", reason=reason)


def _s3_notification(document: dict[str, Any]) -> list[Event]:
    records = document["Records"]
    if not isinstance(records, list) or not records:
        raise ValueError("Records must be a non-empty list")
    events = []
    for record in records:
        name = record["eventName"]
        s3 = record["s3"]
        item = s3["object"]
        events.append(
            Event(
                _kind(name),
                event_name=name,
                bucket=s3["bucket"]["name"],
                key=unquote_plus(item["key"]),
                etag=_etag(item.get("eTag")),
                size=_size(item.get("size")),
                version_id=item.get("versionId") or None,
                sequencer=item.get("sequencer"),
                event_time=_time(record.get("eventTime")),
            )
        )
    return events


def _eventbridge(document: dict[str, Any]) -> Event:
    detail = document["detail"]
    item = detail["object"]
    name = document["detail-type"]
    kinds = {"Object Created": "created", "Object Deleted": "removed"}
    if name not in kinds:
        raise ValueError(f"detail-type {name!r} is not Object Created or Object Deleted")
    return Event(
        kinds[name],
        event_name=f"{name}:{detail.get('reason', '')}".rstrip(":"),
        bucket=detail["bucket"]["name"],
        key=item["key"],
        etag=_etag(item.get("etag")),
        size=_size(item.get("size")),
        version_id=item.get("version-id") or None,
        sequencer=item.get("sequencer"),
        event_time=_time(document.get("time")),
    )


def _kind(event_name: str) -> str:
    if event_name.startswith("ObjectCreated:"):
        return "created"
    if event_name.startswith("ObjectRemoved:"):
        return "removed"
    raise ValueError(f"event {event_name!r} is neither ObjectCreated nor ObjectRemoved")


def _etag(value: Any) -> str | None:
    return str(value).strip('"') if value else None


def _size(value: Any) -> int | None:
    return None if value is None else int(value)


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def sequencer_order(sequencer: str | None) -> str:
    """A string that sorts like S3 says sequencers compare: left-padded to one width."""
    return (sequencer or "").rjust(SEQUENCER_WIDTH, "0")


def s3_notification(
    bucket: str,
    key: str,
    *,
    etag: str | None = None,
    size: int | None = None,
    sequencer: str | None = None,
    version_id: str | None = None,
    event_name: str = "ObjectCreated:Put",
    event_time: dt.datetime | None = None,
) -> dict[str, Any]:
    """One S3 event notification record, shaped and encoded as S3 sends it."""
    from urllib.parse import quote_plus

    item: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": sequencer or ""}
    if event_name.startswith("ObjectCreated:"):
        item.update(eTag=etag or "", size=size or 0)
    if version_id:
        item["versionId"] = version_id
    moment = event_time or dt.datetime.now(dt.timezone.utc)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "eventName": event_name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": item},
    }
