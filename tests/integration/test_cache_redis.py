"""reels.cache against the real local Redis, isolated by a unique key prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from reels import cache


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"test-{uuid.uuid4().hex}:"
    cache.set_key_prefix(p)
    yield p
    cache.set_key_prefix(None)


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[aioredis.Redis]:
    r = cache.redis_client()
    try:
        yield r
    finally:
        await cache.delete_prefix(r, prefix)
        assert [k async for k in r.scan_iter(match=prefix + "*")] == []
        await r.aclose()


async def test_keys_carry_the_env_prefix(prefix: str) -> None:
    assert cache.key("feed", "u1", 3) == f"{prefix}feed:u1:3"


async def test_cache_aside_loads_once_then_hits(client: aioredis.Redis) -> None:
    calls = 0

    async def loader() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"items": ["v1", "v2"], "cursor": "abc", "n": 2}

    k = cache.key("feed", "u1")
    first = await cache.get_or_set_json(client, k, 30, loader)
    second = await cache.get_or_set_json(client, k, 30, loader)
    assert first == second == {"items": ["v1", "v2"], "cursor": "abc", "n": 2}
    assert calls == 1
    ttl_ms = await client.pttl(k)
    assert 0 < ttl_ms <= 30_000


async def test_concurrent_misses_share_one_load(client: aioredis.Redis) -> None:
    calls = 0

    async def slow_loader() -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return [1, 2, 3]

    k = cache.key("hot")
    results = await asyncio.gather(
        *(cache.get_or_set_json(client, k, 10, slow_loader) for _ in range(20))
    )
    assert results == [[1, 2, 3]] * 20
    assert calls == 1


async def test_entry_expires_after_ttl_and_reloads(client: aioredis.Redis) -> None:
    values = iter([1, 2])

    async def loader() -> int:
        return next(values)

    k = cache.key("short")
    assert await cache.get_or_set_json(client, k, 0.1, loader) == 1
    assert await cache.get_or_set_json(client, k, 0.1, loader) == 1
    await asyncio.sleep(0.25)
    assert await cache.get_or_set_json(client, k, 0.1, loader) == 2


async def test_none_is_not_cached(client: aioredis.Redis) -> None:
    calls = 0

    async def loader() -> None:
        nonlocal calls
        calls += 1

    k = cache.key("missing")
    assert await cache.get_or_set_json(client, k, 10, loader) is None
    assert await cache.get_or_set_json(client, k, 10, loader) is None
    assert calls == 2
    assert await client.exists(k) == 0


async def test_delete_prefix_only_touches_its_prefix(client: aioredis.Redis, prefix: str) -> None:
    other = f"test-other-{uuid.uuid4().hex}:k"
    await client.set(other, b"keep")
    try:
        for i in range(5):
            await client.set(cache.key("x", i), b"1")
        assert await cache.delete_prefix(client, prefix) == 5
        assert await client.get(other) == b"keep"
    finally:
        await client.delete(other)
    with pytest.raises(ValueError):
        await cache.delete_prefix(client, "")
