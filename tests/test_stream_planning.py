"""Which events of a micro-batch get work: the latest per object, and not what the ledger has."""

from __future__ import annotations

import datetime as dt
from typing import Any

from thumbs.stream import latest_per_object, still_to_do

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def event(key: str, kind: str = "created", etag: str = "e1", sequencer: str = "0A", offset: int = 0) -> dict[str, Any]:
    return {"bucket": "b", "key": key, "kind": kind, "etag": etag, "sequencer": sequencer,
            "partition": 0, "offset": offset}


def history(key: str, action: str = "render", status: str = "ok", etag: str = "e1",
            sequencer: str = "0A", minutes: int = 0) -> dict[str, Any]:
    return {"source_bucket": "b", "source_key": key, "action": action, "status": status,
            "etag": etag, "sequencer": sequencer, "processed_at": T0 + dt.timedelta(minutes=minutes)}


def test_the_latest_sequencer_wins_whatever_the_arrival_order() -> None:
    events = [event("x", etag="new", sequencer="0100", offset=1), event("x", etag="old", sequencer="FF", offset=2)]
    assert [e["etag"] for e in latest_per_object(events)] == ["new"]


def test_duplicates_collapse_to_one() -> None:
    assert len(latest_per_object([event("x"), event("x", offset=1), event("y")])) == 2


def test_a_redelivered_version_is_not_rendered_again() -> None:
    assert still_to_do([event("x")], [history("x")]) == []


def test_a_new_version_is_rendered() -> None:
    assert still_to_do([event("x", etag="e2", sequencer="0B")], [history("x")]) != []


def test_a_failed_transiently_version_is_tried_again() -> None:
    assert still_to_do([event("x")], [history("x", status="failed_transient")]) != []


def test_an_event_older_than_the_ledger_is_dropped() -> None:
    assert still_to_do([event("x", etag="e0", sequencer="09")], [history("x")]) == []


def test_only_the_newest_ledger_row_counts() -> None:
    rows = [history("x", minutes=0), history("x", action="delete", status="deleted", sequencer="0B", minutes=5)]
    assert still_to_do([event("x", sequencer="0C")], rows) != []  # re-uploaded after a delete
    assert still_to_do([event("x", kind="removed", sequencer="0C")], rows) == []


def test_batch_metrics_reach_cloudwatch_and_a_failure_never_stops_the_batch(monkeypatch: Any) -> None:
    from thumbs import stream

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(stream, "publish_batch_metrics", lambda *args: sent.append(args))
    config = type("Config", (), {"cloudwatch_namespace": "Thumbs", "run_id": "r"})()
    summary = {"rendered": 3, "deleted": 1, "pages": 5, "failures": {"corrupt": 1}}
    stream._publish_metrics(config, 7, summary, 2.5)  # type: ignore[arg-type]
    assert sent == [("Thumbs", "stream", 7, 4, 5, {"corrupt": 1}, 2.5)]

    def broken(*args: Any) -> None:
        raise RuntimeError("throttled")

    warnings: list[str] = []
    monkeypatch.setattr(stream, "publish_batch_metrics", broken)
    monkeypatch.setattr(stream.log, "warning", lambda message, *args: warnings.append(message % args))
    stream._publish_metrics(config, 8, summary, 1.0)  # type: ignore[arg-type]
    assert warnings == ["batch metrics not sent run=r batch=8 error=RuntimeError('throttled')"]
