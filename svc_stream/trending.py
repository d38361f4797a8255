"""Trending scores live in one Redis sorted set (written by the trending job).

svc_stream owns the set; svc_rank reads it only through ListTrending.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from reels.cache import key


def trending_key(region: str = "") -> str:
    return key("trending", region.upper() or "global")


async def top(
    client: aioredis.Redis, *, offset: int, limit: int, region: str = ""
) -> list[tuple[str, float]]:
    rows = await client.zrevrange(trending_key(region), offset, offset + limit - 1, withscores=True)
    return [
        (member.decode() if isinstance(member, bytes) else member, float(score))
        for member, score in rows
    ]
