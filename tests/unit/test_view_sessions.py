"""How the analytics sink groups watch events into view sessions (svc_stream/events/sink.py).

Pure decoding, no stores: the session an event belongs to (a client's own session id,
or the 30-minute window rule for older clients without one) and the order in which a
batch's watch events reach the Redis view/play state machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, events_pb2

from reels import topics
from reels.events import ReceivedEvent
from reels.view_sessions import LEGACY_SESSION_WINDOW_S, effective_session
from svc_stream.events.counters import WATCH_COMPLETE_KIND, WATCH_START_KIND
from svc_stream.events.sink import Batch

ET = common_pb2.EventType
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # a window boundary (12:00)


def stamp(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


def record(
    n: int, kind: int, at: datetime, *, session: str = "", position: float = 0.0
) -> ReceivedEvent:
    message = events_pb2.VideoEvent(
        meta=events_pb2.EventMeta(event_id=f"e{n}"),
        user_id="u",
        client_event_id=f"c{n}",
        video_id="v",
        type=kind,  # type: ignore[arg-type]
        occurred_at=stamp(at),
        position_seconds=position,
        watch_seconds=1.0,
        session_id=session,
    )
    return ReceivedEvent(
        f"e{n}", topics.VIDEO_EVENTS.name, 0, n, None, message.SerializeToString(), {}
    )


def test_a_clients_session_id_is_its_view_session() -> None:
    assert effective_session("abc", stamp(T0)) == "abc"


def test_without_a_session_id_a_half_hour_window_is_one_view_session() -> None:
    first = effective_session("", stamp(T0))
    assert first == effective_session("", stamp(T0 + timedelta(minutes=29, seconds=59)))
    assert first != effective_session("", stamp(T0 + timedelta(minutes=30)))
    assert first != effective_session("", stamp(T0 - timedelta(seconds=1)))
    assert first.startswith("legacy-")
    assert LEGACY_SESSION_WINDOW_S == 1800


def test_the_derived_session_is_written_to_clickhouse_and_the_counters_alike() -> None:
    batch = Batch()
    batch.add(record(1, ET.EVENT_TYPE_WATCH_START, T0 + timedelta(minutes=1)))
    (row,) = batch.video_events
    (delta,) = batch.watch
    assert row[3] == delta.session_id == effective_session("", stamp(T0))
    assert list(batch.history) == [("u", "v", delta.session_id)]


def test_watch_events_reach_the_counters_in_the_order_they_happened() -> None:
    batch = Batch()
    # Delivered out of order; a start and a complete at the same instant: start first.
    batch.add(record(3, ET.EVENT_TYPE_WATCH_COMPLETE, T0 + timedelta(seconds=20), position=20))
    batch.add(record(2, ET.EVENT_TYPE_WATCH_COMPLETE, T0 + timedelta(seconds=10), position=10))
    batch.add(record(1, ET.EVENT_TYPE_WATCH_START, T0 + timedelta(seconds=10)))
    batch.add(record(0, ET.EVENT_TYPE_PROGRESS_25, T0 + timedelta(seconds=5), position=5))
    assert [(d.event_id, d.kind) for d in batch.watch] == [
        ("e0", 0),
        ("e1", WATCH_START_KIND),
        ("e2", WATCH_COMPLETE_KIND),
        ("e3", WATCH_COMPLETE_KIND),
    ]
    assert [d.watch_ms for d in batch.watch] == [1000] * 4


def test_player_reported_engagement_is_telemetry_only() -> None:
    batch = Batch()
    batch.add(record(1, ET.EVENT_TYPE_LIKE, T0, session="s"))
    assert batch.watch == [] and len(batch.video_events) == 1
