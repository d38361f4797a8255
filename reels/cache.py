"""Redis adapter: client factory, key prefixing and cache-aside for JSON values.

Every key the services write goes through :func:`key`, which prepends the prefix
from ``REELS_REDIS_PREFIX`` (default ``reels:<checkout>:``). Tests (and several dev stacks on
one Redis) set a unique prefix so they never see or clobber each other's keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from reels import faults
from reels.config import platform

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "reels:"


def redis_url(url: str | None = None) -> str:
    """``url``, else ``REELS_REDIS_URL`` (PlatformSettings)."""
    return url or platform().redis_url


def key_prefix() -> str:
    """The namespace for every key (``REELS_REDIS_PREFIX``; a process may override it
    once at start with :func:`set_key_prefix`, e.g. a service built from settings)."""
    return _prefix if _prefix is not None else platform().redis_prefix


_prefix: str | None = None
_prefixes: list[str] = []


def set_key_prefix(prefix: str | None) -> None:
    """Use ``prefix`` for every key of this process; None undoes the latest call.

    Apps call it in ``start()`` and undo it in ``stop()``. The calls nest, so when
    several apps share one process (tests, benchmarks) one app's stop leaves the
    prefix of the apps still running, instead of sending them to the setting's
    prefix (another namespace) mid-run."""
    global _prefix
    if prefix is None:
        if _prefixes:
            _prefixes.pop()
    else:
        _prefixes.append(prefix)
    _prefix = _prefixes[-1] if _prefixes else None


def key(*parts: str | int) -> str:
    """A prefixed key from parts: ``key("feed", user_id)`` -> ``reels:feed:<user_id>``."""
    return key_prefix() + ":".join(str(p) for p in parts)


class FaultInjectingConnection(aioredis.Connection):
    """redis-py's TCP connection with the one choke point of fault injection
    (:mod:`reels.faults`, target ``redis``): every command and pipeline passes
    :meth:`send_packed_command`, and an injected fault is the ConnectionError a Redis
    outage raises there."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await faults.inject("redis", RedisConnectionError)
        await super().send_packed_command(command, check_health)


def redis_client(url: str | None = None, **kwargs: Any) -> aioredis.Redis:
    """An asyncio Redis client (connection-pooled; share one per process).

    ``decode_responses`` stays False so binary values (protobuf payloads) round-trip;
    JSON helpers here decode themselves. ``health_check_interval`` makes a client
    notice a dead pooled connection (Redis restart) instead of failing one request.
    """
    kwargs.setdefault("health_check_interval", 30)
    kwargs.setdefault("socket_connect_timeout", 5)
    url = redis_url(url)
    if url.startswith("redis://"):  # TCP (unix:// and rediss:// keep their own class)
        kwargs.setdefault("connection_class", FaultInjectingConnection)
    return aioredis.Redis.from_url(url, **kwargs)


# Per-key in-process locks so concurrent misses in one process load once.
_loading: dict[str, asyncio.Lock] = {}


async def get_or_set_json(
    client: aioredis.Redis,
    cache_key: str,
    ttl: float,
    loader: Callable[[], Awaitable[Any]],
) -> Any:
    """Cache-aside: return the cached JSON value at ``cache_key`` or load, store, return.

    ``cache_key`` is used as given (build it with :func:`key`). ``ttl`` is seconds
    (fractions allowed). Concurrent misses within this process share one ``loader``
    call; across processes a miss may load more than once, which cache-aside accepts.
    A ``None`` result from ``loader`` is returned but not cached, so a transient
    "not found" does not stick for a whole TTL.
    """
    raw = await client.get(cache_key)
    if raw is not None:
        return json.loads(raw)
    lock = _loading.setdefault(cache_key, asyncio.Lock())
    try:
        async with lock:
            raw = await client.get(cache_key)
            if raw is not None:
                return json.loads(raw)
            value = await loader()
            if value is not None:
                await client.set(
                    cache_key, json.dumps(value, separators=(",", ":")), px=max(1, int(ttl * 1000))
                )
            return value
    finally:
        if not lock.locked() and _loading.get(cache_key) is lock:
            _loading.pop(cache_key, None)


async def delete_prefix(client: aioredis.Redis, prefix: str, batch: int = 500) -> int:
    """Delete every key starting with ``prefix`` (SCAN, never KEYS); returns the count.

    For tests and admin tools; refuses an empty prefix so it cannot wipe the database.
    """
    if not prefix:
        raise ValueError("refusing to delete with an empty prefix")
    pattern = prefix.replace("\\", "\\\\")
    for ch in "*?[]":
        pattern = pattern.replace(ch, "\\" + ch)
    deleted = 0
    pending: list[Any] = []
    async for k in client.scan_iter(match=pattern + "*", count=batch):
        pending.append(k)
        if len(pending) >= batch:
            deleted += await client.unlink(*pending)
            pending = []
    if pending:
        deleted += await client.unlink(*pending)
    return deleted
