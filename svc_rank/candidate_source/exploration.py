"""``exploration``: a uniform random sample of the catalog outside the user's
interests (not by a creator the user follows; the pipeline also drops samples by
creators that ``similar`` or ``followees`` recalled). The mixer gives it a fixed share
of each list (``exploration_share``, default 10 %).

Sampling uses ``rank_videos.sample_key`` (uniform, fixed at insert): one index range
scan from a random point, wrapping around, instead of ``ORDER BY random()`` over the
whole catalog. The point comes from the request's seed, so rebuilding a list (Redis
down, paging by offset) samples the same videos.
"""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from svc_rank.candidate import EXPLORATION, Candidate, FeedRequest
from svc_rank.models import RankVideo


class ExplorationSource:
    name = "exploration"
    reason = EXPLORATION

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], k: int) -> None:
        self.sessionmaker = sessionmaker
        self.k = k

    async def fetch(self, request: FeedRequest, fallbacks: set[int]) -> list[Candidate]:
        start = random.Random(request.seed).random()
        excluded = set(request.followees) | {request.user_id}
        want = self.k * 2
        async with self.sessionmaker() as session:
            rows = list(
                await session.execute(
                    select(RankVideo.video_id, RankVideo.creator_id)
                    .where(RankVideo.sample_key >= start)
                    .order_by(RankVideo.sample_key)
                    .limit(want)
                )
            )
            if len(rows) < want:
                rows += list(
                    await session.execute(
                        select(RankVideo.video_id, RankVideo.creator_id)
                        .where(RankVideo.sample_key < start)
                        .order_by(RankVideo.sample_key)
                        .limit(want - len(rows))
                    )
                )
        picked = [vid for vid, creator in rows if creator not in excluded]
        return [Candidate(vid, {EXPLORATION}) for vid in picked[: self.k]]
