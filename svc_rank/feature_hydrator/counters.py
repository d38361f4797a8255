"""Per-video engagement counters, read from the Redis hashes svc_stream maintains.

``video:{id}:counters`` (svc_stream/events/counters.py owns and writes them, exactly
once per event): ``views`` (view sessions), ``plays``, ``completions``, ``watch_ms``,
``likes``, ``shares``, ``comments``. The data flow of the platform puts the feed's
features in Redis ("video.events → ClickHouse + Redis features") precisely so the
ranker reads them in one pipelined round trip instead of querying ClickHouse; svc_rank
only reads them. The key layout is that contract (svc_rank does not import svc_stream).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from reels.cache import key

FIELDS = ("views", "plays", "completions", "watch_ms", "likes", "shares", "comments")


def counters_key(video_id: str) -> str:
    return key("video", video_id, "counters")


async def video_counters(
    redis: aioredis.Redis, video_ids: Iterable[str]
) -> dict[str, dict[str, int]]:
    """The counters of each video (zeros for what never happened)."""
    ids = list(video_ids)
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for vid in ids:
            pipe.hmget(counters_key(vid), FIELDS)
        rows = await pipe.execute()
    return {
        vid: {f: int(v or 0) for f, v in zip(FIELDS, row, strict=True)}
        for vid, row in zip(ids, rows, strict=True)
    }


def empty() -> dict[str, int]:
    return dict.fromkeys(FIELDS, 0)
