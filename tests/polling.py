"""Waiting for an outcome in tests, bounded: poll a check, fail naming what never happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it holds; after ``within`` seconds fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for: {what}")
        await asyncio.sleep(interval)


async def eventually_value(
    check: Callable[[], Awaitable[T | None]], within: float, what: str, interval: float = 0.5
) -> T:
    """Poll ``check`` until it returns something truthy and return that; bounded like
    :func:`eventually`."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for: {what}")
        await asyncio.sleep(interval)
