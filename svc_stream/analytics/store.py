"""The analytics store as svc_stream's RPCs see it: open, or not open yet.

svc_stream is the only process that opens the analytics store (chDB allows one
process per data path). It is opened in the background by the analytics sink loop:
another process holding the chDB path, or a ClickHouse server that is down, must not
keep svc_stream from serving playback. Until then analytics RPCs answer UNAVAILABLE.
"""

from __future__ import annotations

import asyncio

from reels import errors
from reels.analytics import Analytics

RETRY_AFTER_S = 1.0


class AnalyticsHandle:
    """Holds the :class:`Analytics` store once it is open (and its schema in place)."""

    def __init__(self, store: Analytics | None = None) -> None:
        self._store = store
        self._ready = asyncio.Event()
        if store is not None:
            self._ready.set()

    @property
    def is_open(self) -> bool:
        return self._store is not None

    def set(self, store: Analytics) -> None:
        self._store = store
        self._ready.set()

    def get(self) -> Analytics:
        """The open store, or UNAVAILABLE (with RetryInfo) while it is not open yet."""
        if self._store is None:
            raise errors.Unavailable(
                "analytics store is not open yet, retry shortly", RETRY_AFTER_S
            )
        return self._store

    async def wait(self) -> Analytics:
        """The store, once it is open."""
        await self._ready.wait()
        assert self._store is not None
        return self._store

    async def aclose(self) -> None:
        store, self._store = self._store, None
        self._ready.clear()
        if store is not None:
            await store.aclose()
