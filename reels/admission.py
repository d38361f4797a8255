"""Admission control: a service sheds load explicitly instead of timing out.

Every unary RPC takes one of ``max_inflight`` slots before its handler runs. When all
are taken it waits at most ``wait_s`` for one (a short queue absorbs bursts); after
that the call is refused at once with **RESOURCE_EXHAUSTED** and a google.rpc
``RetryInfo`` (plus a ``retry-after`` trailer, which Envoy's JSON transcoder turns
into the HTTP ``Retry-After`` header of the 429). The alternative, letting every call
in, only moves the queue into the database pool and the event loop, where each call
times out after its deadline: the client waits longest and learns least.

Why RESOURCE_EXHAUSTED and not UNAVAILABLE: it is what gRPC's own concurrency limit
(``maximum_concurrent_rpcs``) answers, Envoy maps it to 429 (not a 5xx, which an SRE
pages on and which clients' retry policies treat as a fault of ours), and its message
says which service was busy, so it is never mistaken for the per-user rate limit.

What is not admitted here: health checks and reflection (load balancers must always
get an answer), streaming responses (a chat subscription holds its call for minutes),
and the RPCs a service degrades itself (``GetFeed`` answers from a stale list under
overload: svc_rank/overload.py). Source of the scheme: the "queue with a bounded wait,
then reject" admission of Google's SRE book, ch. 21 "Handling Overload".
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from reels import errors


class Overloaded(errors.ResourceExhausted):
    """RESOURCE_EXHAUSTED + RetryInfo: every admission slot of a service is taken."""


class Admission:
    """At most ``max_inflight`` admitted calls at once; a caller waits ``wait_s``
    (seconds) at most for a slot. ``max_inflight`` 0 admits everything.

    Single event loop: the counters are plain ints (asyncio, no threads).
    """

    def __init__(
        self, service: str, max_inflight: int, wait_s: float, retry_after_s: float = 1.0
    ) -> None:
        if max_inflight < 0 or wait_s < 0:
            raise ValueError("max_inflight and wait_s must be >= 0")
        self.service = service
        self.max_inflight = max_inflight
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.shed = 0  # calls refused since start (also counted in rpc metrics)
        self._sem = asyncio.Semaphore(max_inflight) if max_inflight else None

    @property
    def saturated(self) -> bool:
        """True while every slot is taken (a caller would have to wait)."""
        return self._sem is not None and self._sem.locked()

    async def try_acquire(self, wait_s: float | None = None) -> bool:
        """Take a slot, waiting up to ``wait_s`` (default: the configured wait)."""
        if self._sem is None:
            self.inflight += 1
            return True
        wait = self.wait_s if wait_s is None else wait_s
        if self._sem.locked() and wait <= 0:
            return False
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=wait if wait > 0 else None)
        except TimeoutError:
            return False
        self.inflight += 1
        return True

    async def acquire(self) -> None:
        """Take a slot, however long that takes (a caller with no other way out)."""
        if self._sem is not None:
            await self._sem.acquire()
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1
        if self._sem is not None:
            self._sem.release()

    def overloaded(self) -> Overloaded:
        self.shed += 1
        return Overloaded(
            f"svc_{self.service} is overloaded ({self.max_inflight} requests in progress); "
            f"retry after {max(1, math.ceil(self.retry_after_s))} s",
            retry_after_seconds=self.retry_after_s,
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block; raises :class:`Overloaded` when none came in time."""
        if not await self.try_acquire():
            raise self.overloaded()
        try:
            yield
        finally:
            self.release()
