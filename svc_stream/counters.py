"""Per-video engagement counters in Redis for the feed, applied exactly once per event.

The feed reads counters on every ranking call, so they live in one Redis hash per
video (``key("video", id, "counters")``: views, completions, watch_ms, likes,
shares, comments) instead of being queried from ClickHouse.

Kafka delivers at least once, so every increment is guarded by a ledger key
``key("counted", event_id)`` set with NX *in the same Lua script* as the increments:
Redis runs a script atomically, so an event is either counted and remembered, or
neither. A redelivery finds the ledger key and changes nothing. Ledger keys expire
after ``LEDGER_TTL_S`` (8 days): RecordEvents rejects events older than 7 days, so
no replay of a client event can arrive after its ledger key is gone. (For Redis
Cluster the keys of one call would need a common hash tag; the local default is one
Redis.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from reels.cache import key

LEDGER_TTL_S = 8 * 86400
FIELDS = ("views", "completions", "watch_ms", "likes", "shares", "comments")
# Follower counts per creator live beside them, same mechanism.
CREATOR_FIELDS = ("followers",)

_APPLY = """
local ttl = tonumber(ARGV[1])
local applied = 0
local i = 2
local n = #ARGV
while i <= n do
  local seen = ARGV[i]
  local hash = ARGV[i + 1]
  local count = tonumber(ARGV[i + 2])
  local fresh = redis.call('SET', seen, '1', 'NX', 'EX', ttl)
  for j = 0, count - 1 do
    if fresh then
      redis.call('HINCRBY', hash, ARGV[i + 3 + 2 * j], ARGV[i + 4 + 2 * j])
    end
  end
  if fresh then applied = applied + 1 end
  i = i + 3 + 2 * count
end
return applied
"""


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """What one event adds: ``increments`` to the hash of ``subject`` (video or creator)."""

    event_id: str
    hash_key: str
    increments: Mapping[str, int]


def video_counters_key(video_id: str) -> str:
    return key("video", video_id, "counters")


def creator_counters_key(creator_id: str) -> str:
    return key("creator", creator_id, "counters")


class Counters:
    """Applies counter deltas idempotently; one script call per consumed batch."""

    def __init__(self, redis: aioredis.Redis, *, chunk: int = 500) -> None:
        self.redis = redis
        self.chunk = chunk
        self._script = redis.register_script(_APPLY)

    async def apply(self, deltas: Sequence[CounterDelta]) -> int:
        """Apply the deltas of events not applied before; returns how many events were new."""
        applied = 0
        for start in range(0, len(deltas), self.chunk):
            args: list[str | int] = [LEDGER_TTL_S]
            for d in deltas[start : start + self.chunk]:
                items = [(f, a) for f, a in d.increments.items() if a]
                args += [key("counted", d.event_id), d.hash_key, len(items)]
                for name, amount in items:
                    args += [name, amount]
            applied += int(await self._script(keys=[], args=args))
        return applied

    async def video(self, video_id: str) -> dict[str, int]:
        """The video's counters (zeros for what never happened)."""
        raw = await self.redis.hgetall(video_counters_key(video_id))
        return _decode(raw, FIELDS)

    async def videos(self, video_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        ids = list(video_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for vid in ids:
                pipe.hgetall(video_counters_key(vid))
            rows = await pipe.execute()
        return {vid: _decode(raw, FIELDS) for vid, raw in zip(ids, rows, strict=True)}

    async def creator(self, creator_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(creator_counters_key(creator_id))
        return _decode(raw, CREATOR_FIELDS)


def _decode(raw: Mapping[bytes | str, bytes | str], fields: Sequence[str]) -> dict[str, int]:
    out = dict.fromkeys(fields, 0)
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        out[name] = int(v)
    return out
