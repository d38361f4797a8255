"""Handles svc_stream's event and analytics groups share, opened once per process.

Each comes from ``ctx.extras`` when something (another group's start(), a test) put
it there already, else it is built here from the environment. Anything that needs a
remote component (Kafka, the chDB path) is brought up in the background with
retries: svc_stream must start and serve health (and playback) even while the
broker is down, and RPCs that need the missing part answer UNAVAILABLE meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors
from reels.analytics import Analytics
from reels.auth import current_user
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EventProducer, OutgoingEvent, ensure_topics, kafka_bootstrap
from svc_stream.playback.catalog import Catalog
from svc_stream.context import StreamContext

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0
TOPICS = ("video.events", "engagement.events", "video.published")


def require_user() -> str:
    """The caller; every event and engagement action belongs to an authenticated user."""
    user = current_user.get()
    if not user:
        raise errors.Unauthenticated("this call needs an authenticated user")
    return user


def bootstrap(ctx: StreamContext) -> str:
    return str(ctx.extras.get("kafka_bootstrap") or kafka_bootstrap())


def sessionmaker(ctx: StreamContext) -> async_sessionmaker[AsyncSession]:
    if "sessionmaker" not in ctx.extras:
        engine = make_engine()
        ctx.extras["sessionmaker"] = make_sessionmaker(engine)
        ctx.on_stop.append(engine.dispose)
    return ctx.extras["sessionmaker"]  # type: ignore[no-any-return]


def catalog(ctx: StreamContext) -> Catalog:
    """The playback group's catalog (it runs the video.published consumer that fills it)."""
    if "catalog" not in ctx.extras:
        ctx.extras["catalog"] = Catalog(sessionmaker(ctx))
    return ctx.extras["catalog"]  # type: ignore[no-any-return]


def analytics(ctx: StreamContext) -> Analytics:
    """The analytics store, or UNAVAILABLE while it is not open (yet)."""
    store = ctx.extras.get("analytics")
    if store is None:
        raise errors.Unavailable("analytics store is not open yet, retry shortly", RETRY_AFTER_S)
    return store  # type: ignore[no-any-return]


def spawn(ctx: StreamContext, name: str, coro: Awaitable[None]) -> asyncio.Task[None]:
    """A background task cancelled (and awaited) when the service stops."""
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    task.set_name(name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    ctx.on_stop.append(stop)
    return task


async def retry_forever(
    what: str, attempt: Callable[[], Awaitable[Any]], pause: float = 2.0
) -> Any:
    """Call ``attempt`` until it succeeds; a component that is down only delays us."""
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the cause, try again
            log.warning("%s failed (%r); retrying in %.0fs", what, exc, pause)
            await asyncio.sleep(pause)


class Producer:
    """The service's Kafka producer, started in the background and restarted on demand.

    ``publish`` sends a whole set of records and returns only when every one was
    acknowledged (acks=all); anything else is UNAVAILABLE with RetryInfo, so the
    caller retries the whole set (safe: every record has a deterministic event id
    and every consumer of ours is idempotent by it).
    """

    def __init__(self, bootstrap_servers: str, *, ack_timeout_ms: int = 5000) -> None:
        self.bootstrap = bootstrap_servers
        self.ack_timeout_ms = ack_timeout_ms
        self._producer: EventProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> EventProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = EventProducer(
                    self.bootstrap,
                    request_timeout_ms=self.ack_timeout_ms,
                    client_id="svc_stream",
                    max_batch_size=1024 * 1024,
                    linger_ms=5,
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
        return self._producer

    async def start(self) -> None:
        await self._ensure()

    async def raw(self) -> EventProducer:
        """The started EventProducer (for the outbox relay)."""
        return await self._ensure()

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        if not events:
            return
        try:
            producer = await self._ensure()
            results = await producer.send_batched(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise errors.Unavailable(
                "event broker unavailable; nothing was recorded, retry the batch", RETRY_AFTER_S
            ) from exc
        failed = [r for r in results if isinstance(r, Exception)]
        if failed or len(results) != len(events):
            log.warning("publish: %d of %d records not acknowledged: %r",
                        len(failed) or len(events) - len(results), len(events), failed[:1])
            raise errors.Unavailable(
                "event broker did not acknowledge the batch; retry it (duplicates are "
                "counted once)",
                RETRY_AFTER_S,
            )

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


def producer(ctx: StreamContext) -> Producer:
    if "producer" not in ctx.extras:
        prod = Producer(bootstrap(ctx))
        ctx.extras["producer"] = prod
        ctx.on_stop.append(prod.stop)
        spawn(ctx, "producer-start", retry_forever("kafka producer start", prod.start))
        spawn(ctx, "ensure-topics", retry_forever(
            "create topics", lambda: ensure_topics(TOPICS, bootstrap=bootstrap(ctx))
        ))
    return ctx.extras["producer"]  # type: ignore[no-any-return]
