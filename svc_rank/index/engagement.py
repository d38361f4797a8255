"""The ``engagement.events`` consumer: the followee graph and like/follow affinity.

Group ``svc_rank.index.engagement``, idempotent by event id in Postgres
(:class:`~reels.events.IdempotentConsumer`): FOLLOW/UNFOLLOW insert or delete a
``rank_follows`` row in the same transaction that records the event id. The
user × creator affinity counters in Redis (follows, net likes) are applied under
their own ledger key (:func:`svc_rank.index.user_state.apply_pair_increments`), so a
redelivery after a failed commit does not count twice either.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from reels.v1 import events_pb2
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import IdempotentConsumer, ReceivedEvent
from svc_rank.index.user_state import apply_pair_increments
from svc_rank.models import RankFollow

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_rank.index.engagement"

_PAIR_DELTA = {
    events_pb2.ENGAGEMENT_TYPE_FOLLOW: ("f", 1),
    events_pb2.ENGAGEMENT_TYPE_UNFOLLOW: ("f", -1),
    events_pb2.ENGAGEMENT_TYPE_LIKE: ("l", 1),
    events_pb2.ENGAGEMENT_TYPE_UNLIKE: ("l", -1),
}


class EngagementIndexer:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], redis: aioredis.Redis
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.active_consumer: IdempotentConsumer | None = None

    async def handle(self, session: AsyncSession, event: ReceivedEvent) -> None:
        try:
            message = topics.ENGAGEMENT_EVENTS.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("engagement: undecodable record %s; skipped", event.event_id)
            return
        user, creator = message.user_id, message.creator_id
        if not user or not creator:
            return
        if message.type == events_pb2.ENGAGEMENT_TYPE_FOLLOW:
            await session.execute(
                insert(RankFollow).values(user_id=user, creator_id=creator).on_conflict_do_nothing()
            )
        elif message.type == events_pb2.ENGAGEMENT_TYPE_UNFOLLOW:
            await session.execute(
                delete(RankFollow).where(
                    RankFollow.user_id == user, RankFollow.creator_id == creator
                )
            )
        delta = _PAIR_DELTA.get(message.type)
        if delta is not None:
            field, amount = delta
            await apply_pair_increments(
                self.redis, event.event_id, user, {f"{creator}|{field}": amount}
            )

    def consumer(self, **kwargs: Any) -> IdempotentConsumer:
        return IdempotentConsumer(
            [topics.ENGAGEMENT_EVENTS], CONSUMER_GROUP, self.handle, self.sessionmaker, **kwargs
        )
