"""The cached ranked list of a user: Redis ``feed:{user_id}``, 60 s TTL.

A cursor pages through this one list (no duplicates, no gaps across the pages of a
session); the list carries its id (``list_id``) so a cursor from an expired or
replaced list is recognised. Every item holds what a page needs — metadata, counters
and the signed URLs (valid for hours) — so a cached page costs one GET and no other
call (goal: p99 < 5 ms inside the service). URLs are signed a page ahead of the
reader, not all at build time (most of a 200-item list is never paged to): a new
list signs its first two pages; serving page k signs page k + 2 in the background
and writes it back with :func:`replace`; an item still unsigned when its page is
served is signed then (``ListItem.signed``).

``feed:{user_id}:last`` keeps a copy for an hour: when svc_stream is down (no trending
page, no URLs to sign) the signed, unserved rest of that list is still servable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from reels.cache import key
from svc_rank.candidate import ListItem


def feed_key(user_id: str) -> str:
    return key("feed", user_id)


def last_key(user_id: str) -> str:
    """Its own namespace: ``feed:{user}:last`` would be user ``{user}:last``'s list."""
    return key("feedlast", user_id)


@dataclass(slots=True)
class CachedList:
    list_id: str
    items: list[ListItem]
    fallbacks: list[int] = field(default_factory=list)
    scorer: str = ""
    experiment: str = ""

    def dumps(self) -> bytes:
        return json.dumps(
            {
                "id": self.list_id,
                "fb": self.fallbacks,
                "sc": self.scorer,
                "ex": self.experiment,
                "items": [i.to_json() for i in self.items],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> CachedList:
        data = json.loads(raw)
        return cls(
            data["id"],
            [ListItem.from_json(row) for row in data["items"]],
            list(data.get("fb", [])),
            data.get("sc", ""),
            data.get("ex", ""),
        )


async def load(redis: aioredis.Redis, user_id: str, *, last: bool = False) -> CachedList | None:
    raw = await redis.get(last_key(user_id) if last else feed_key(user_id))
    if raw is None:
        return None
    try:
        return CachedList.loads(raw)
    except (ValueError, KeyError, TypeError):
        return None  # an older format: rebuild


_REPLACE = """
local n = 0
for i, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
    redis.call('SET', k, ARGV[2], 'KEEPTTL')
    n = n + 1
  end
end
return n
"""


_DROP = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _id_prefix(list_id: str) -> str:
    return json.dumps({"id": list_id}, separators=(",", ":"))[:-1] + ","


async def drop_finished(redis: aioredis.Redis, user_id: str, list_id: str) -> int:
    """Forget ``feed:{user}`` once its last page was served (if it still holds that
    list): refreshing page 1 then builds a new list of what was not served yet, instead
    of the finished list's repeats. The ``:last`` copy stays (svc_stream fallback)."""
    return int(await redis.eval(_DROP, 1, feed_key(user_id), _id_prefix(list_id)))


async def replace(redis: aioredis.Redis, user_id: str, lst: CachedList) -> int:
    """Overwrite the cached copies of ``lst`` (``feed:{user}`` and its ``:last``) that
    still hold the same list id, keeping their TTLs; a list built since is left alone.
    Returns how many copies were replaced (0..2). One atomic Lua step."""
    prefix = _id_prefix(lst.list_id)
    return int(
        await redis.eval(_REPLACE, 2, feed_key(user_id), last_key(user_id), prefix, lst.dumps())
    )


async def store(
    redis: aioredis.Redis, user_id: str, lst: CachedList, *, ttl_s: float, last_ttl_s: float
) -> None:
    raw = lst.dumps()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(feed_key(user_id), raw, px=max(1, int(ttl_s * 1000)))
        pipe.set(last_key(user_id), raw, px=max(1, int(last_ttl_s * 1000)))
        await pipe.execute()
