"""A short-lived, per-instance cache of :class:`StreamInfo` for the chat hot path.

The chat part asks for a stream's state on every send and subscribe; Postgres answers a
primary-key lookup in well under a millisecond, but not 1,000 times per message. Each
entry lives ``ttl_s`` seconds (default 1 s), so a state change made on another instance
is seen here within ``ttl_s``; changes made on this instance replace the entry at once
(:meth:`InfoCache.put`). Misses for one stream that arrive together share one load. An
unknown stream is cached too (as ``None``): ids are random UUIDs, so a stream cannot
appear under an id someone already asked about, except in the rare race where a
client asks before the create committed; that stale miss lasts ``ttl_s`` at most.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from svc_chat.streams.model import StreamInfo

Loader = Callable[[str], Awaitable[StreamInfo | None]]


class InfoCache:
    def __init__(self, loader: Loader, *, ttl_s: float, max_entries: int) -> None:
        self.loader = loader
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, StreamInfo | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[StreamInfo | None]] = {}

    async def get(self, stream_id: str) -> StreamInfo | None:
        """The stream's info, at most ``ttl_s`` seconds old; None for an unknown stream."""
        entry = self._entries.get(stream_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._loading.get(stream_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this caller was cancelled, not the shared load
            return await self.loader(stream_id)  # the shared load was cancelled: load alone
        future: asyncio.Future[StreamInfo | None] = asyncio.get_running_loop().create_future()
        self._loading[stream_id] = future
        try:
            info = await self.loader(stream_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it unhandled
            raise
        finally:
            self._loading.pop(stream_id, None)
        self.put(stream_id, info)
        future.set_result(info)
        return info

    def put(self, stream_id: str, info: StreamInfo | None) -> None:
        """Replace the entry (this instance changed the stream, or just loaded it)."""
        self._entries[stream_id] = (time.monotonic() + self.ttl_s, info)
        self._entries.move_to_end(stream_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
