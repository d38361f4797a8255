"""Who follows whom, for followers-only chat: ``engagement.events`` FOLLOW/UNFOLLOW into a
Redis set per creator (svc_chat.chat.moderation.followers_key).

svc_stream owns the follow graph and announces every change on ``engagement.events``
(keyed by creator_id for follows, so one creator's follows and unfollows arrive in
order). Replaying them in order is idempotent (SADD/SREM of the latest state), so a
redelivery after a crash needs no ledger: the set converges to the last event's state.
Group ``svc_chat.chat.follows``; a record that does not decode is logged and skipped.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from reels.v1 import events_pb2

from reels import topics
from reels.events import EventConsumer, ReceivedEvent, ensure_topics
from svc_chat.chat.moderation import followers_key

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_chat.chat.follows"


class Follows:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.active_consumer: EventConsumer | None = None
        """The running consumer (tests wait for its partitions)."""

    async def handle(self, event: ReceivedEvent) -> None:
        try:
            message = topics.ENGAGEMENT_EVENTS.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("follows: undecodable record %s; skipped", event.event_id)
            return
        user, creator = message.user_id, message.creator_id
        if not user or not creator:
            return
        if message.type == events_pb2.ENGAGEMENT_TYPE_FOLLOW:
            await self.redis.sadd(followers_key(creator), user)
        elif message.type == events_pb2.ENGAGEMENT_TYPE_UNFOLLOW:
            await self.redis.srem(followers_key(creator), user)

    async def run(self, **consumer_options: Any) -> None:
        """Consume until cancelled (a supervised loop)."""
        consumer = EventConsumer(
            [topics.ENGAGEMENT_EVENTS], CONSUMER_GROUP, self.handle, **consumer_options
        )
        try:
            await ensure_topics(consumer.topics, bootstrap=consumer.bootstrap)
            await consumer.start()
            self.active_consumer = consumer
            await consumer.run()
        finally:
            self.active_consumer = None
            await consumer.stop()
