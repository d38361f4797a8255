"""The object store as playback reads it: bounded in time, cached where it is hot.

Every call has a deadline (``Settings.media_store_timeout_s``, default 5 s): a stuck disk
or a slow S3 becomes :class:`StorageUnavailable` (the origin answers 503 with
Retry-After, RPCs UNAVAILABLE) instead of a request that hangs. A missing object is
told apart from a missing *store*: for a local store whose root is gone or unreadable
every key would look missing, so a miss is double-checked against the root before it
becomes a 404.

Two small TTL caches keep the hot path off the disk: playlist bytes (tiny, read on
every manifest request) and existence of variant playlists (checked on every
GetPlayback to drop missing renditions). Both are short (5 s) because objects can be
republished or removed underneath us. Keys under a *volatile* prefix (``live/``: svc_chat's
ingest rewrites a live playlist every 1 s segment, and a live master appears about 1.6 s
after publish) are never cached: a 5 s old live playlist would put every viewer 5
segments behind, and a remembered miss would hide a starting stream for 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from reels import errors
from reels.storage import LocalObjectStore, ObjectStore

DEFAULT_TIMEOUT_S = 5.0
RETRY_AFTER_S = 2.0
DEFAULT_TTL_S = 5.0
MAX_CACHED_BYTES = 64 * 1024  # playlists only; segments are never cached in memory
MAX_ENTRIES = 50_000
# Key prefixes whose objects change or appear every second (svc_stream.playback.live).
VOLATILE_PREFIXES = ("live/",)

T = TypeVar("T")
V = TypeVar("V")


class StorageUnavailable(errors.Unavailable):
    """The store did not answer in time or is not there at all: retry later.

    An outage of a dependency, so it *is* UNAVAILABLE (with RetryInfo) for any RPC it
    escapes from (the interceptor maps it); the origin answers 503 + Retry-After.
    ``reason`` (and ``str()``) say what happened, for the logs; clients get only
    ``message``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("media storage unavailable, retry shortly", RETRY_AFTER_S)
        self.reason = reason

    def __str__(self) -> str:
        return f"media storage unavailable: {self.reason}"


class _TtlCache(Generic[V]):
    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> tuple[bool, V | None]:
        hit = self._items.get(key)
        if hit is not None and hit[0] > self._clock():
            return True, hit[1]
        return False, None

    def put(self, key: str, value: V) -> None:
        if len(self._items) >= MAX_ENTRIES:
            self._items.clear()  # crude but bounded; entries live seconds anyway
        self._items[key] = (self._clock() + self.ttl_s, value)


class MediaStore:
    """Read-only, deadline-bounded view of an :class:`ObjectStore` for playback."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        volatile_prefixes: tuple[str, ...] = VOLATILE_PREFIXES,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.volatile_prefixes = volatile_prefixes
        self._exists = _TtlCache[bool](ttl_s, clock)
        self._small = _TtlCache[bytes](ttl_s, clock)

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        except TimeoutError as exc:
            raise StorageUnavailable(f"object store did not answer in {self.timeout_s:g}s") from exc
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise  # the object is missing: the caller decides between 404 and 503
        except OSError as exc:  # permissions, I/O errors, a vanished mount
            raise StorageUnavailable(f"object store error: {exc}") from exc

    async def healthy(self) -> bool:
        """Whether the store itself is reachable (its root exists and is readable)."""
        if isinstance(self.store, LocalObjectStore):
            root: Path = self.store.root
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(lambda: root.is_dir() and os.access(root, os.R_OK | os.X_OK)),
                    self.timeout_s,
                )
            except TimeoutError:
                return False
        return True

    async def _missing(self, key: str) -> FileNotFoundError:
        """The exception for a miss: a 404 only if the store itself is fine."""
        if not await self.healthy():
            raise StorageUnavailable("object store is not reachable")
        return FileNotFoundError(key)

    def cacheable(self, key: str) -> bool:
        """Whether ``key`` may be answered from the TTL caches (not a volatile key)."""
        return not key.startswith(self.volatile_prefixes)

    async def exists(self, key: str) -> bool:
        cacheable = self.cacheable(key)
        if cacheable:
            hit, value = self._exists.get(key)
            if hit:
                return bool(value)
        found = await self._bounded(self.store.exists(key))
        if not found and not await self.healthy():
            raise StorageUnavailable("object store is not reachable")
        if cacheable:
            self._exists.put(key, found)
        return found

    async def read_small(self, key: str) -> bytes:
        """A whole small object (a playlist), cached briefly."""
        cacheable = self.cacheable(key)
        if cacheable:
            hit, value = self._small.get(key)
            if hit and value is not None:
                return value
        try:
            data: bytes = await self._bounded(self.store.get_bytes(key))
        except FileNotFoundError:
            raise await self._missing(key) from None
        if cacheable and len(data) <= MAX_CACHED_BYTES:
            self._small.put(key, data)
        return data

    async def size(self, key: str) -> int:
        try:
            return await self._bounded(self.store.size(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise await self._missing(key) from None

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` chunk by chunk, each chunk under the deadline."""
        chunks = aiter(self.store.open_range(key, start, end))
        try:
            while True:
                try:
                    chunk = await self._bounded(anext(chunks))
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
