"""RecordEvents (events release): player events, validated per item, onto Kafka.

RecordEvents answers OK only after Kafka acknowledged every accepted event of the
batch. On any broker failure it answers UNAVAILABLE with RetryInfo and the client
sends the same batch again: each event's id is derived from (user, client_event_id),
so whatever part of the failed attempt did reach the log is the *same* event as its
retry, and the sink (ReplacingMergeTree read with FINAL, Redis ledger in one Lua
script) counts it once. An accepted event is therefore never dropped (OK means
acked by all in-sync replicas) and never counted twice. With the broker down, no
record of the batch reaches the log, so nothing of it is recorded at all. (A broker
that fails half-way through a batch can leave part of it recorded until the client's
retry completes it; Kafka transactions would close that window but Tansu does not
support them, and the retry contract makes the end state exact either way.)

Accepted events go to Kafka as one ``VideoEventBatch`` record per call (topic
``video.event-batches``, keyed by user), each item with its own event id: the
record is acknowledged whole or not at all, which is the contract above.

The time an event is counted at is established here, not trusted from the client:
``occurred_at + (receive time - the batch's sent_at)`` when the client sends
``sent_at``, else ``occurred_at`` as it is (see ``validation.establish_time``). The
``VideoEvent`` item on Kafka carries that established time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2, stream_pb2

from reels import errors, topics
from reels.events import EVENT_COUNT_HEADER, EVENT_ID_HEADER, OutgoingEvent, inject_trace_headers
from reels.metrics import record_player_event
from svc_stream.caller import require_user
from svc_stream.events.producer import Producer
from svc_stream.events.validation import (
    DEFAULT_LIMITS,
    MAX_BATCH,
    EventLimits,
    batch_event_id,
    event_id_for,
    validate_batch,
)
from svc_stream.playback.catalog import Catalog


class EventsRpcs:
    """RecordEvents over the catalog (to judge items) and the player-event producer."""

    def __init__(
        self, catalog: Catalog, producer: Producer, limits: EventLimits = DEFAULT_LIMITS
    ) -> None:
        self.catalog = catalog
        self.producer = producer
        self.limits = limits

    async def RecordEvents(  # noqa: N802 - generated name
        self, request: stream_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.RecordEventsResponse:
        user = require_user()
        if not 0 < len(request.events) <= MAX_BATCH:
            raise errors.InvalidArgument(
                "a batch holds 1 to 500 events",
                [("events", f"must hold between 1 and {MAX_BATCH} events")],
            )
        now = datetime.now(UTC)
        received = timestamp_pb2.Timestamp()
        received.FromDatetime(now)
        # A catalog (database) outage surfaces as UNAVAILABLE through the interceptor.
        # Each accepted verdict carries the event's established time: occurred_at
        # corrected by (receive time - the batch's sent_at), see validation.py.
        verdicts = await validate_batch(
            request.events,
            self.catalog.get,
            now=now,
            limits=self.limits,
            sent_at=request.sent_at if request.HasField("sent_at") else None,
        )
        headers = inject_trace_headers()
        # One Kafka record per call (topic video.event-batches): the broker, the
        # producer and every consumer handle one record instead of one per event, and
        # consumers decode the items in bulk. Each item carries its own event id; the
        # receive time and trace context are the batch's (events.proto).
        batch = events_pb2.VideoEventBatch(
            meta=events_pb2.EventMeta(
                occurred_at=received, trace_context=headers, producer="svc_stream"
            ),
            user_id=user,
        )
        items = batch.events
        event_ids = []
        for verdict in verdicts:
            if not verdict.accepted or verdict.duplicate:
                continue
            item = request.events[verdict.index]
            event_id = event_id_for(user, item.client_event_id)
            event_ids.append(event_id)
            nanos = verdict.occurred_at_nanos
            items.add(
                meta=events_pb2.EventMeta(event_id=event_id),
                user_id=user,
                client_event_id=item.client_event_id,
                video_id=item.video_id,
                type=item.type,
                occurred_at=timestamp_pb2.Timestamp(
                    seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000
                ),
                position_seconds=item.position_seconds,
                watch_seconds=item.watch_seconds,
                rendition=item.rendition,
                device=item.device,
                country=item.country.upper(),
                session_id=item.session_id,
            )
        outgoing = []
        if event_ids:
            batch.meta.event_id = batch_event_id(event_ids)
            outgoing.append(
                OutgoingEvent(
                    topics.VIDEO_EVENT_BATCHES,
                    user,
                    batch.SerializeToString(),
                    {
                        **headers,
                        EVENT_ID_HEADER: batch.meta.event_id,
                        EVENT_COUNT_HEADER: str(len(event_ids)),
                    },
                )
            )
        await self.producer.publish(outgoing)
        for verdict in verdicts:  # acked by Kafka: completion and rendition metrics
            if verdict.video is not None and not verdict.duplicate:
                item = request.events[verdict.index]
                record_player_event(
                    item.type, item.position_seconds, verdict.video.duration_s, item.rendition
                )
        return stream_pb2.RecordEventsResponse(
            accepted_count=sum(1 for v in verdicts if v.accepted),
            results=[
                stream_pb2.ItemResult(
                    index=v.index,
                    client_event_id=v.client_event_id,
                    accepted=v.accepted,
                    reason=v.reason,
                )
                for v in verdicts
            ],
        )
