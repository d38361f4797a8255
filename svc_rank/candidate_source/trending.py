"""``trending``: svc_stream's trending set, global and (when the user's region is
known) regional, through ListTrending.

svc_stream unavailable → the same sorted sets read from Redis directly
(``trending:{region|global}``, written by svc_stream's trending job; read-only here)
and the response says so (FEED_FALLBACK_REDIS_TRENDING). Both unavailable →
SourceUnavailable.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from reels.v1 import rank_pb2

from reels.cache import key
from svc_rank.candidate import TRENDING, Candidate, FeedRequest, SourceUnavailable
from svc_rank.stream_client import StreamClient


def trending_key(region: str = "") -> str:
    """svc_stream's sorted set (svc_stream/analytics/trending.py owns and writes it)."""
    return key("trending", region.upper() or "global")


async def trending_from_redis(
    redis: aioredis.Redis, *, limit: int, offset: int = 0, region: str = ""
) -> list[tuple[str, float]]:
    rows = await redis.zrevrange(trending_key(region), offset, offset + limit - 1, withscores=True)
    return [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in rows]


class TrendingSource:
    name = "trending"
    reason = TRENDING

    def __init__(self, stream: StreamClient, redis: aioredis.Redis, k: int) -> None:
        self.stream = stream
        self.redis = redis
        self.k = k

    async def _list(self, region: str, fallbacks: set[int]) -> list[tuple[str, float]]:
        try:
            return await self.stream.trending(limit=self.k, region=region)
        except SourceUnavailable:
            try:
                rows = await trending_from_redis(self.redis, limit=self.k, region=region)
            except Exception as exc:  # noqa: BLE001 - Redis down too
                raise SourceUnavailable(f"trending: svc_stream and Redis down: {exc}") from exc
            fallbacks.add(rank_pb2.FEED_FALLBACK_REDIS_TRENDING)
            return rows

    async def fetch(self, request: FeedRequest, fallbacks: set[int]) -> list[Candidate]:
        regions = [""] + ([request.region] if request.region else [])
        lists = await asyncio.gather(*(self._list(r, fallbacks) for r in regions))
        out: dict[str, Candidate] = {}
        for rows in lists:
            for vid, score in rows:
                have = out.get(vid)
                if have is None:
                    out[vid] = Candidate(vid, {TRENDING}, trending_score=score)
                else:
                    have.trending_score = max(have.trending_score, score)
        return list(out.values())
