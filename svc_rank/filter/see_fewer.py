""" "See fewer of this creator": the creators a user asked to see fewer of (Redis).

``SeeFewer(creator_id)`` (POST /api/v1/reels/see-fewer) adds the creator to the
sorted set ``rank:fewer:{user}`` with its expiry time (epoch seconds) as the score,
``REELS_RANK_SEE_FEWER_TTL_S`` (30 days) from now; asking again extends it. The key
itself expires with its newest member, and expired members are dropped on each
write, so the set never grows without bound.

**Honoured by exclusion**: while the entry lives, none of the creator's videos is
eligible for the user's feed (:func:`svc_rank.filter.eligibility.eligible`), whatever
source recalled it — followees included: the user asked in so many words, and a
demotion would still show the creator whenever few candidates are left. The user's
cached ranked list is dropped at once, so the next page request builds a list
without the creator (a cursor of the dropped list starts a fresh list, which never
repeats what was served). Redis unavailable: the list is built without the
preference (as without the served history), and the RPC answers UNAVAILABLE.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from reels.cache import key


def fewer_key(user_id: str) -> str:
    return key("rank", "fewer", user_id)


async def add(
    redis: aioredis.Redis, user_id: str, creator_id: str, *, ttl_s: float, now: float | None = None
) -> float:
    """Remember the creator for ``ttl_s``; returns the expiry (epoch seconds)."""
    now = time.time() if now is None else now
    until = now + ttl_s
    k = fewer_key(user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(k, "-inf", now)
        pipe.zadd(k, {creator_id: until})
        # Every entry has the same lifetime, so the newest one outlives the rest.
        pipe.expire(k, max(1, int(ttl_s) + 1))
        await pipe.execute()
    return until


async def creators(redis: aioredis.Redis, user_id: str, now: float | None = None) -> set[str]:
    """The creators the user asked to see fewer of, still in force."""
    now = time.time() if now is None else now
    rows = await redis.zrangebyscore(fewer_key(user_id), f"({now}", "+inf")
    return {r.decode() if isinstance(r, bytes) else str(r) for r in rows}
