"""The player-event consumer: user vectors, affinity, hashtags, region, watched ids.

It reads ``video.event-batches`` (RecordEvents' records, one per call) and the older
one-event-per-record ``video.events``.

Group ``svc_rank.index.watches``. Every record is applied to Redis exactly once by
its event id (:func:`svc_rank.index.user_state.apply_watch`: a ledger key in the same
MULTI as the update), so no Postgres transaction is needed per player event (the
volume is the platform's highest). A record whose video svc_rank's catalog does not
know yet (its ``video.published`` still on the way) still sets the region; its vector
credit is lost, which a later watch of the same user makes up for.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from reels import topics
from reels.events import EventConsumer, ReceivedEvent
from reels.view_sessions import effective_session
from svc_rank.index.catalog import Catalog
from svc_rank.index.user_state import WatchUpdate, apply_watch
from svc_rank.side_effect.served import served_key

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_rank.index.watches"


class WatchIndexer:
    def __init__(self, redis: aioredis.Redis, catalog: Catalog, *, half_life_s: float) -> None:
        self.redis = redis
        self.catalog = catalog
        self.half_life_s = half_life_s
        self.applied = 0
        self.active_consumer: EventConsumer | None = None

    async def handle(self, event: ReceivedEvent) -> None:
        """One record: a ``video.event-batches`` record (its items in order, each by its
        own event id) or a single ``video.events`` record (by the record's id)."""
        try:
            if event.topic == topics.VIDEO_EVENT_BATCHES.name:
                batch = topics.VIDEO_EVENT_BATCHES.parse(event.value)
                items = [
                    (m.meta.event_id or f"{event.event_id}#{n}", m)
                    for n, m in enumerate(batch.events)
                ]
            else:
                items = [(event.event_id, topics.VIDEO_EVENTS.parse(event.value))]
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("watches: undecodable %s record %s; skipped", event.topic, event.event_id)
            return
        for event_id, message in items:
            await self._apply(event_id, message)

    async def _apply(self, event_id: str, message: Any) -> None:
        if not message.user_id or not message.video_id:
            return
        occurred = (
            message.occurred_at if message.HasField("occurred_at") else message.meta.occurred_at
        )
        video = await self.catalog.get(message.video_id)
        applied = await apply_watch(
            self.redis,
            WatchUpdate(
                event_id=event_id,
                user_id=message.user_id,
                video_id=message.video_id,
                video=video,
                kind=int(message.type),
                occurred_ms=occurred.ToMilliseconds(),
                country=message.country,
                watch_seconds=message.watch_seconds,
                session=effective_session(message.session_id, occurred),
            ),
            half_life_s=self.half_life_s,
            served_key=served_key(message.user_id),
        )
        self.applied += int(applied)

    def consumer(self, **kwargs: Any) -> EventConsumer:
        return EventConsumer(
            [topics.VIDEO_EVENT_BATCHES, topics.VIDEO_EVENTS], CONSUMER_GROUP, self.handle, **kwargs
        )
