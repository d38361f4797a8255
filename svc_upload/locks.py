"""One writer per upload inside this process.

A dropped client may still have a handler running when it reconnects; the new
request waits for the old one to finish (and commit what it stored) instead of
racing it on the same staged file. Across processes the offset update is a
compare-and-set in Postgres, so a second instance can never commit over a first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from reels import errors


class KeyedLocks:
    """asyncio locks by key, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str, wait_s: float = 30.0) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), wait_s)
            except TimeoutError as exc:
                raise errors.Unavailable(
                    "another write to this upload is still in progress; retry shortly",
                    retry_after_seconds=1.0,
                ) from exc
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[name] -= 1
            if self._users[name] == 0:
                self._users.pop(name, None)
                self._locks.pop(name, None)
