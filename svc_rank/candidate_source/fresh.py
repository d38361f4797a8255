"""``fresh``: videos published within ``fresh_window_s`` that have had fewer than
``fresh_max_impressions`` impressions, newest first — the cold-start pool. The mixer
reserves a share of every list for it (``fresh_share``), so each new video is shown
until it has gathered the impressions that let its own signals speak. Without Redis
(impressions unknown) every recent video counts as fresh."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from svc_rank.candidate import FRESH, Candidate, FeedRequest
from svc_rank.models import RankVideo
from svc_rank.side_effect.served import impressions


class FreshSource:
    name = "fresh"
    reason = FRESH

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        *,
        k: int,
        window_s: float,
        max_impressions: int,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.k = k
        self.window_s = window_s
        self.max_impressions = max_impressions

    async def fetch(self, request: FeedRequest, fallbacks: set[int]) -> list[Candidate]:
        since = datetime.fromtimestamp(time.time() - self.window_s, UTC)
        async with self.sessionmaker() as session:
            ids = list(
                await session.scalars(
                    select(RankVideo.video_id)
                    .where(RankVideo.published_at >= since)
                    .order_by(RankVideo.published_at.desc())
                    .limit(self.k * 3)
                )
            )
        try:
            seen = await impressions(self.redis, ids)
        except Exception:  # noqa: BLE001 - Redis down: impressions unknown
            seen = {}
        fresh = [vid for vid in ids if seen.get(vid, 0) < self.max_impressions]
        return [Candidate(vid, {FRESH}) for vid in fresh[: self.k]]
