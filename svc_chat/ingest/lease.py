"""One publisher per stream across every svc_chat instance: a Redis lease.

Several svc_chat instances may sit behind one RTMP address (a TCP load balancer), so
"this stream already has a publisher" cannot be a per-process dict. The instance that
accepts a publish takes ``<prefix>live:publisher:<stream_id>`` with ``SET NX PX``
(value: a token unique to that publish), renews it every
:data:`RENEW_INTERVAL_S` while media flows, and deletes it when the publisher leaves,
both by compare-and-set on the token (Lua), so an instance never renews or drops a
lease another publish has taken since (the distributed-lock pattern of the Redis
documentation, "Distributed Locks with Redis", single instance).

An instance that dies holding a lease frees it after :data:`LEASE_TTL_S`: an encoder
reconnecting to another instance is refused until then (OBS and ffmpeg retry). 15 s,
not less: under load the first renewal of a new publish can come seconds late, and an
expired lease is taken back (:meth:`PublisherLeases.keep`) unless another publish holds it.
The same lease tells a grace timer on one instance that the publisher came back on
another, so it must not end the stream.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from reels.cache import key

LEASE_TTL_S = 15.0
"""How long a lease outlives its last renewal (s): an instance's death frees it then."""
RENEW_INTERVAL_S = 1.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(stream_id: str) -> str:
    return key("live", "publisher", stream_id)


class PublisherLeases:
    """See the module docstring."""

    def __init__(self, redis: aioredis.Redis, *, ttl_s: float = LEASE_TTL_S) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    async def acquire(self, stream_id: str, token: str) -> bool:
        """Take the stream's lease; False when another publish holds it."""
        return bool(await self.redis.set(lease_key(stream_id), token, nx=True, px=self.ttl_ms))

    async def renew(self, stream_id: str, token: str) -> bool:
        """Extend our lease; False when it is no longer ours (expired and taken)."""
        return bool(await self._renew(keys=[lease_key(stream_id)], args=[token, self.ttl_ms]))

    async def keep(self, stream_id: str, token: str) -> bool:
        """Renew our lease, or take it back if it expired and nobody took it; False only
        when another publish holds it."""
        if await self.renew(stream_id, token):
            return True
        return await self.acquire(stream_id, token)

    async def release(self, stream_id: str, token: str) -> None:
        """Drop our lease (nothing when it is no longer ours)."""
        await self._release(keys=[lease_key(stream_id)], args=[token])

    async def holder(self, stream_id: str) -> str | None:
        """The token of the publish that holds the stream's lease now; None when free."""
        token = await self.redis.get(lease_key(stream_id))
        if token is None:
            return None
        return token.decode() if isinstance(token, bytes) else str(token)
