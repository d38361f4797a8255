"""Batch records on ``video.event-batches`` (issue 14): the sink decodes them in bulk.

RecordEvents writes one ``VideoEventBatch`` per call; the analytics sink must give each
item the same rows and counter deltas a one-event ``video.events`` record of the same
event gives (older producers' records are still read), skip only an item it cannot
store, and size its batches by events (the ``event-count`` header), not records.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord
from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, events_pb2

from reels import topics
from reels.events import EVENT_COUNT_HEADER, ReceivedEvent
from svc_stream.events.sink import Batch, record_events
from svc_stream.events.validation import batch_event_id, event_id_for

ET = common_pb2.EventType
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RECEIVED = timestamp_pb2.Timestamp(seconds=int((T0 + timedelta(seconds=5)).timestamp()))


def event(
    n: int, kind: int, *, seconds: int | None = None, session: str = "s1"
) -> events_pb2.VideoEvent:
    return events_pb2.VideoEvent(
        meta=events_pb2.EventMeta(event_id=f"e{n}"),
        user_id="u1",
        client_event_id=f"c{n}",
        video_id=f"v{n % 2}",
        type=kind,  # type: ignore[arg-type]
        occurred_at=timestamp_pb2.Timestamp(
            seconds=int(T0.timestamp()) + n if seconds is None else seconds
        ),
        position_seconds=float(n),
        watch_seconds=1.5,
        rendition="720p",
        device=common_pb2.Device.DEVICE_IOS,
        country="DE",
        session_id=session,
    )


EVENTS = [
    event(0, ET.EVENT_TYPE_WATCH_START),
    event(1, ET.EVENT_TYPE_PROGRESS_25),
    event(2, ET.EVENT_TYPE_WATCH_COMPLETE, session=""),
    event(3, ET.EVENT_TYPE_WATCH_START),
]


def batch_record(items: list[events_pb2.VideoEvent]) -> ReceivedEvent:
    message = events_pb2.VideoEventBatch(
        meta=events_pb2.EventMeta(event_id="batch:x", occurred_at=RECEIVED),
        user_id="u1",
        events=items,
    )
    return ReceivedEvent(
        "batch:x",
        topics.VIDEO_EVENT_BATCHES.name,
        0,
        0,
        b"u1",
        message.SerializeToString(),
        {EVENT_COUNT_HEADER: str(len(items))},
    )


def single_records(items: list[events_pb2.VideoEvent]) -> list[ReceivedEvent]:
    out = []
    for n, item in enumerate(items):
        copy = events_pb2.VideoEvent()
        copy.CopyFrom(item)
        copy.meta.occurred_at.CopyFrom(RECEIVED)
        out.append(
            ReceivedEvent(
                item.meta.event_id,
                topics.VIDEO_EVENTS.name,
                0,
                n,
                item.video_id.encode(),
                copy.SerializeToString(),
                {},
            )
        )
    return out


def test_a_batch_record_gives_what_the_same_single_records_give() -> None:
    from_batch, from_singles = Batch(), Batch()
    from_batch.add(batch_record(EVENTS))
    for record in single_records(EVENTS):
        from_singles.add(record)
    assert from_batch.video_events == from_singles.video_events
    assert [r[0] for r in from_batch.video_events] == ["e0", "e1", "e2", "e3"]
    assert from_batch.history == from_singles.history
    assert from_batch.watch == from_singles.watch
    # Every item keeps its own fields (not the first item's, not the batch's).
    row = from_batch.video_events[2]
    assert row[1:6] == ("v0", "u1", row[3], "c2", ET.EVENT_TYPE_WATCH_COMPLETE)
    assert row[3].startswith("legacy-")  # no session id: the 30-minute window rule
    assert row[7] == RECEIVED.seconds * 1000  # received_at is the batch's


def test_an_item_clickhouse_cannot_store_is_skipped_alone() -> None:
    items = [*EVENTS[:2], event(9, ET.EVENT_TYPE_PROGRESS_50, seconds=400 * 365 * 86400 * 10)]
    items.append(EVENTS[3])
    batch = Batch()
    batch.add(batch_record(items))
    assert [r[0] for r in batch.video_events] == ["e0", "e1", "e3"]
    assert "e9" not in {d.event_id for d in batch.watch}


def test_items_without_an_id_get_one_from_the_record() -> None:
    items = [event(0, ET.EVENT_TYPE_WATCH_START), event(1, ET.EVENT_TYPE_PROGRESS_25)]
    items[1].meta.event_id = ""
    batch = Batch()
    batch.add(batch_record(items))
    assert [r[0] for r in batch.video_events] == ["e0", "batch:x#1"]


def test_an_undecodable_batch_record_is_skipped_not_raised() -> None:
    batch = Batch()
    bad = batch_record(EVENTS)
    batch.add(ReceivedEvent(bad.event_id, bad.topic, 0, 0, None, b"\xff\xff\xff", {}))
    assert batch.video_events == []


def _consumer_record(headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=b"",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=headers,
    )


def test_a_record_counts_as_the_events_it_holds() -> None:
    assert record_events(_consumer_record([(EVENT_COUNT_HEADER, b"500")])) == 500
    assert record_events(_consumer_record([("event-id", b"x")])) == 1
    assert record_events(_consumer_record([(EVENT_COUNT_HEADER, b"lots")])) == 1
    assert record_events(_consumer_record([(EVENT_COUNT_HEADER, b"0")])) == 1


def test_a_retried_call_writes_a_record_with_the_same_id() -> None:
    ids = [event_id_for("u1", f"c{n}") for n in range(3)]
    assert batch_event_id(ids) == batch_event_id(list(ids))
    assert batch_event_id(ids) != batch_event_id(ids[:2])
    assert batch_event_id(ids) != batch_event_id(list(reversed(ids)))
    assert batch_event_id(ids).startswith("batch:")
