"""Live viewer counts in Redis, shared by every svc_chat instance.

Per stream, three keys (one Redis Cluster hash slot: the stream id is the hash tag):

* ``live:{<id>}:viewers`` — a sorted set of viewer ids scored by when each stops
  counting (expiry, Redis server time in **milliseconds**). Player heartbeats
  (ReportViewing) and the chat part's subscribers (every ~10 s) :meth:`Viewers.touch`
  it. A viewer id is a user id, so a person who watches and chats counts once.
  Nobody has to remove a crashed instance's viewers: they stop counting when their
  expiry passes.
* ``live:{<id>}:peak`` — the most viewers counted at once, raised by each touch
  (a max kept in the same Lua step).
* ``live:{<id>}:unique`` — a HyperLogLog of every viewer id (PFADD/PFCOUNT; ~0.81 %
  standard error).

Every step is one Lua script, atomic on the server, and uses the Redis server's
clock, so instances with skewed clocks agree on who has expired. The keys live
``state_ttl_s`` after the last touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from reels.cache import key

# KEYS: viewers, peak, unique. ARGV: ttl (ms), state ttl (ms), viewer ids...
# ZADD GT: a shorter ttl never shortens a longer one already granted (a chat
# subscriber's touch and a player heartbeat for one user).
_TOUCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 3, #ARGV, 500 do
  local args = {}
  local ids = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = expiry
    args[#args + 1] = ARGV[j]
    ids[#ids + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], 'GT', unpack(args))
  redis.call('PFADD', KEYS[3], unpack(ids))
end
local n = redis.call('ZCARD', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > peak then
  peak = n
  redis.call('SET', KEYS[2], peak, 'PX', keep)
else
  redis.call('PEXPIRE', KEYS[2], keep)
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {n, peak}
"""

# KEYS: viewers, peak, unique. Returns {now counting, peak, unique}.
_COUNTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {
  redis.call('ZCARD', KEYS[1]),
  tonumber(redis.call('GET', KEYS[2]) or '0'),
  redis.call('PFCOUNT', KEYS[3]),
}
"""


@dataclass(frozen=True)
class ViewerCounts:
    """``now``: viewers counting at this moment; ``peak``: the most at once so far;
    ``unique``: distinct viewers so far (HyperLogLog estimate)."""

    now: int = 0
    peak: int = 0
    unique: int = 0


class Viewers:
    """Viewer counting for every stream (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, state_ttl_s: float) -> None:
        self.redis = redis
        self.state_ttl_ms = max(1, int(state_ttl_s * 1000))
        self._touch = redis.register_script(_TOUCH)
        self._counts = redis.register_script(_COUNTS)

    @staticmethod
    def keys(stream_id: str) -> list[str]:
        """The viewers, peak and unique keys of a stream (one hash slot)."""
        tag = "{" + stream_id + "}"
        return [key("live", tag, "viewers"), key("live", tag, "peak"), key("live", tag, "unique")]

    async def touch(self, stream_id: str, viewer_ids: Sequence[str], ttl_s: float) -> int:
        """``viewer_ids`` count as watching for the next ``ttl_s`` **seconds** (longer if
        an earlier touch granted more). Returns how many count now. One Lua step."""
        ids = [v for v in dict.fromkeys(viewer_ids) if v]
        if not ids:
            return await self.count(stream_id)
        now, _peak = await self._touch(
            keys=self.keys(stream_id),
            args=[max(1, int(ttl_s * 1000)), self.state_ttl_ms, *ids],
        )
        return int(now)

    async def drop(self, stream_id: str, viewer_ids: Sequence[str]) -> None:
        """``viewer_ids`` stop counting at once (a chat subscription closed cleanly).

        Viewer ids are user ids: a user still watching through a player (or another
        subscription on another instance) is counted again at its next touch, so the
        count may dip for up to one heartbeat interval."""
        ids = [v for v in viewer_ids if v]
        if ids:
            await self.redis.zrem(self.keys(stream_id)[0], *ids)

    async def count(self, stream_id: str) -> int:
        """Viewers counting now (expired members are trimmed first)."""
        return (await self.counts(stream_id)).now

    async def counts(self, stream_id: str) -> ViewerCounts:
        """Now, peak and unique counts of one stream (one Lua step)."""
        now, peak, unique = await self._counts(keys=self.keys(stream_id))
        return ViewerCounts(int(now), int(peak), int(unique))

    async def counts_many(self, stream_ids: Sequence[str]) -> dict[str, ViewerCounts]:
        """:meth:`counts` of several streams in one round trip (a pipeline)."""
        if not stream_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                await self._counts(keys=self.keys(stream_id), client=pipe)
            replies = await pipe.execute()
        return {
            sid: ViewerCounts(int(r[0]), int(r[1]), int(r[2]))
            for sid, r in zip(stream_ids, replies, strict=True)
        }

    async def forget(self, stream_id: str) -> None:
        """Delete a stream's viewer state (after its end, once the counts are stored)."""
        await self.redis.delete(*self.keys(stream_id))
