"""The ``streams.events`` messages (StreamLifecycleEvent) a transition emits.

Built here, written by svc_chat.streams.store into the outbox in the same transaction
as the state change (an event exists exactly when the change committed), sent to
Kafka by the service's outbox relay. ``stream.started`` on CREATED -> LIVE;
``stream.ended`` on LIVE -> ENDED and CREATED -> ENDED, with ``duration_seconds`` =
ended_at - started_at (the true duration from the database clock; 0 when the stream
never went live) and the viewer counts frozen at the end (``viewer_count`` is the peak,
as the seed's payload had it).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2

from reels.events import inject_trace_headers
from svc_chat.models import LiveStream
from svc_chat.streams.lifecycle import EVENT_TYPES, State

PRODUCER = "svc_chat"


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def duration_s(started_at: datetime | None, ended_at: datetime | None) -> float:
    """Seconds between start and end; 0 when either is missing (never went live)."""
    if started_at is None or ended_at is None:
        return 0.0
    return max(0.0, (ended_at - started_at).total_seconds())


def lifecycle_event(
    stream: LiveStream, previous: State, event_id: uuid.UUID
) -> events_pb2.StreamLifecycleEvent:
    """The event announcing that ``stream`` (as just updated) left ``previous``.

    ``meta.trace_context`` carries the current span (the RPC's), so consumers join
    the trace of the request that started or ended the stream.
    """
    state = State[stream.state]
    occurred = stream.ended_at if state == State.ENDED else stream.started_at
    meta = events_pb2.EventMeta(
        event_id=str(event_id),
        occurred_at=_ts(occurred or stream.created_at),
        trace_context=inject_trace_headers({}),
        producer=PRODUCER,
    )
    event = events_pb2.StreamLifecycleEvent(
        meta=meta,
        event_type=EVENT_TYPES[state],
        stream_id=stream.stream_id,
        creator_id=stream.creator_id,
        title=stream.title,
        state=state.value,  # type: ignore[arg-type]
        previous_state=previous.value,  # type: ignore[arg-type]
    )
    if stream.started_at is not None:
        event.started_at.CopyFrom(_ts(stream.started_at))
    if state == State.ENDED:
        if stream.ended_at is not None:
            event.ended_at.CopyFrom(_ts(stream.ended_at))
        event.duration_seconds = duration_s(stream.started_at, stream.ended_at)
        event.viewer_count = stream.peak_viewer_count
        event.peak_viewer_count = stream.peak_viewer_count
        event.unique_viewer_count = stream.unique_viewer_count
    return event
