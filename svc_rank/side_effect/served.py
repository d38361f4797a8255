"""What a user has been served: a Redis sorted set per user, and impressions per video.

**No repeats within a window.** When a page is served, its ids go into
``rank:served:{user}`` (a sorted set scored by the time served, ms); the next list
excludes every id scored within ``served_window_s`` (3 days by default). Debian's
Redis 7.0 has no Bloom module (``BF.*``), and a hand-rolled Bloom filter or bitset
cannot forget one member when its window passes (it could only be rotated whole,
forgetting everything at once) and has false positives — a video wrongly
"already served" is a video a creator never gets shown. A sorted set is exact,
forgets per member (``ZREMRANGEBYSCORE`` trims what fell out of the window on every
write) and is small at feed scale: at most ``served_max`` (5000) members per user,
about 70 bytes each, ~350 KB for the heaviest user; the key expires a window after
the last write, so idle users cost nothing. Watched videos are added by the
``video.events`` consumer too (a video opened from a shared link is not re-served).
When too few unseen videos are left to fill a page, the feed tops it up with served
ones, least recently served first (:func:`served_oldest_first`), flagged
``FEED_REASON_SEEN_BEFORE``: a user with few videos around never gets an empty feed.

**Impressions** per video (``rank:impressions``, one hash) count how often a video
was served to anyone; the ``fresh`` source uses it to give every new video a
guaranteed share of exposure until it has had ``fresh_max_impressions``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from reels.cache import key


def served_key(user_id: str) -> str:
    return key("rank", "served", user_id)


def impressions_key() -> str:
    return key("rank", "impressions")


async def served_ids(redis: aioredis.Redis, user_id: str, window_s: float) -> set[str]:
    """Ids served to (or watched by) the user within the window."""
    since = int((time.time() - window_s) * 1000)
    rows = await redis.zrangebyscore(served_key(user_id), since, "+inf")
    return {r.decode() if isinstance(r, bytes) else str(r) for r in rows}


async def served_oldest_first(
    redis: aioredis.Redis, user_id: str, window_s: float, limit: int
) -> list[str]:
    """Up to ``limit`` ids served to (or watched by) the user within the window, the
    least recently served first: what a feed that ran out of unseen videos repeats."""
    since = int((time.time() - window_s) * 1000)
    rows = await redis.zrangebyscore(served_key(user_id), since, "+inf", start=0, num=limit)
    return [r.decode() if isinstance(r, bytes) else str(r) for r in rows]


async def record_served(
    redis: aioredis.Redis,
    user_id: str,
    video_ids: Sequence[str],
    *,
    window_s: float,
    max_items: int,
) -> None:
    """Remember a served page (one pipelined round trip)."""
    if not video_ids:
        return
    now = int(time.time() * 1000)
    skey = served_key(user_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(skey, dict.fromkeys(video_ids, now))
        pipe.zremrangebyscore(skey, "-inf", now - int(window_s * 1000))
        pipe.zremrangebyrank(skey, 0, -(max_items + 1))
        pipe.expire(skey, max(1, int(window_s)))
        ikey = impressions_key()
        for vid in video_ids:
            pipe.hincrby(ikey, vid, 1)
        await pipe.execute()


async def impressions(redis: aioredis.Redis, video_ids: Iterable[str]) -> dict[str, int]:
    ids = list(video_ids)
    if not ids:
        return {}
    values = await redis.hmget(impressions_key(), ids)
    return {vid: int(v or 0) for vid, v in zip(ids, values, strict=True)}
