"""Parsing S3 event notifications and EventBridge events from Kafka message values."""

from __future__ import annotations

import json

from thumbs.events import Event, parse_message, s3_notification, sequencer_order


def message(*records: dict) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def test_an_s3_notification_record_becomes_a_created_event() -> None:
    record = s3_notification("docs", "a.pdf", etag="abc", size=10, sequencer="00A1")
    (event,) = parse_message(message(record))
    assert (event.kind, event.bucket, event.key, event.etag, event.size, event.sequencer) == (
        "created", "docs", "a.pdf", "abc", 10, "00A1"
    )
    assert event.event_name == "ObjectCreated:Put" and event.event_time is not None


def test_keys_are_form_url_decoded() -> None:
    raw = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {
        "key": "deep/Q1+report+%2B+na%C3%AFve%C3%A9.pdf", "eTag": "e", "size": 1, "sequencer": "1"}}}
    (event,) = parse_message(message(raw))
    assert event.key == "deep/Q1 report + naïveé.pdf"


def test_the_helper_encodes_keys_as_s3_does() -> None:
    record = s3_notification("b", "a b+c/é.pdf")
    assert record["s3"]["object"]["key"] == "a+b%2Bc/%C3%A9.pdf"
    assert parse_message(message(record))[0].key == "a b+c/é.pdf"


def test_several_records_in_one_message() -> None:
    records = [s3_notification("b", f"{i}.pdf", sequencer=str(i)) for i in range(3)]
    assert [e.key for e in parse_message(message(*records))] == ["0.pdf", "1.pdf", "2.pdf"]


def test_removals_and_versions() -> None:
    record = s3_notification("b", "x.pdf", event_name="ObjectRemoved:Delete", version_id="v7")
    (event,) = parse_message(message(record))
    assert (event.kind, event.version_id, event.etag) == ("removed", "v7", None)


def test_the_s3_test_event_is_acknowledged() -> None:
    value = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}).encode()
    assert parse_message(value) == [Event("test", event_name="s3:TestEvent", bucket="b")]


def test_eventbridge_events_are_not_encoded() -> None:
    value = json.dumps({
        "source": "aws.s3", "detail-type": "Object Created", "time": "2026-12-01T10:00:00Z",
        "detail": {"bucket": {"name": "b"}, "reason": "PutObject", "object": {
            "key": "a b+c.pdf", "etag": "e1", "size": 5, "sequencer": "0B", "version-id": "v1"}},
    }).encode()
    (event,) = parse_message(value)
    assert (event.kind, event.key, event.etag, event.version_id) == ("created", "a b+c.pdf", "e1", "v1")
    deleted = json.loads(value)
    deleted["detail-type"] = "Object Deleted"
    assert parse_message(json.dumps(deleted).encode())[0].kind == "removed"


def test_anything_else_is_malformed_with_a_reason() -> None:
    cases = {
        b"not json": "not JSON",
        b"[1, 2]": "not an object",
        b'{"hello": 1}': "neither",
        b'{"Records": []}': "missing or wrong",
        b'{"Records": [{"eventName": "ObjectCreated:Put"}]}': "missing or wrong",
        b'{"Records": [{"eventName": "ObjectRestore:Post", "s3": {}}]}': "missing or wrong",
        b"\xff\xfe": "not JSON",
        b"x" * (300 << 10): "over",
    }
    for value, reason in cases.items():
        (event,) = parse_message(value)
        assert event.kind == "malformed" and reason in (event.reason or ""), value[:40]
    assert parse_message(None)[0].kind == "malformed"


def test_sequencers_order_after_padding() -> None:
    assert sequencer_order("FF") < sequencer_order("100")
    assert sequencer_order("0055") < sequencer_order("0056")
