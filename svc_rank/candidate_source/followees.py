"""``followees``: the most recent videos of the creators the user follows (within
``followee_window_s``), newest first, from svc_rank's own catalog and graph."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from svc_rank.candidate import FOLLOWEE, Candidate, FeedRequest
from svc_rank.models import RankFollow, RankVideo


async def followees_of(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(RankFollow.creator_id).where(RankFollow.user_id == user_id)
        )
        return set(rows)


class FolloweeSource:
    name = "followees"
    reason = FOLLOWEE

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], k: int, window_s: float
    ) -> None:
        self.sessionmaker = sessionmaker
        self.k = k
        self.window_s = window_s

    async def fetch(self, request: FeedRequest, fallbacks: set[int]) -> list[Candidate]:
        if not request.followees:
            return []
        since = datetime.fromtimestamp(time.time() - self.window_s, UTC)
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(RankVideo.video_id)
                .where(
                    RankVideo.creator_id.in_(sorted(request.followees)),
                    RankVideo.published_at >= since,
                )
                .order_by(RankVideo.published_at.desc())
                .limit(self.k)
            )
            return [Candidate(vid, {FOLLOWEE}) for vid in rows]
