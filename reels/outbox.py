"""Transactional outbox: events commit with the state change, a relay publishes them.

A service never writes to Kafka inside a request: it calls :func:`enqueue` in the
same database transaction as its own writes, so an event exists if and only if
the change committed. :class:`OutboxRelay` then publishes unsent rows in id order
and stamps ``sent_at``; a crash between "acked by Kafka" and "stamped" resends
the row, which idempotent consumers (``reels.events.IdempotentConsumer``) skip.

``OutboxRelay.run()`` is the one way a relay runs (services run it under their
supervisor): it starts the producer, waiting for a broker that is not up yet, relays
until ``stop()`` or cancellation, then stops the producer. ``python -m reels.outbox``
runs one until SIGTERM/SIGINT (PlatformSettings: REELS_DATABASE_URL,
REELS_KAFKA_BOOTSTRAP, REELS_OUTBOX_BATCH).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg
from aiokafka.structs import RecordMetadata
from google.protobuf.message import Message
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.db.models import Outbox
from reels.events import (
    EVENT_ID_HEADER,
    EventProducer,
    OutgoingEvent,
    end_publish_span,
    ensure_topics,
    inject_trace_headers,
    start_publish_span,
)
from reels.supervise import report_not_ready, report_ready
from reels.topics import Topic

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "reels_outbox"
# pg advisory lock id for "the one relay that sends right now" (ordered mode).
RELAY_LOCK_KEY = 0x5245454C  # "REEL"


async def enqueue_message(
    session: AsyncSession,
    topic: Topic,
    message: Message,
    event_id: uuid.UUID | str,
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> uuid.UUID:
    """:func:`enqueue` a payload message on its registered topic, keyed by the topic's
    key field unless ``key`` is given (reels.topics)."""
    if not isinstance(message, topic.message):
        raise TypeError(
            f"{topic.name} carries {topic.message.__name__}, not {type(message).__name__}"
        )
    return await enqueue(
        session,
        topic,
        key if key is not None else topic.key(message),
        message.SerializeToString(),
        event_id,
        headers,
    )


async def enqueue(
    session: AsyncSession,
    topic: Topic | str,
    key: bytes | str | None,
    payload: bytes,
    event_id: uuid.UUID | str,
    headers: Mapping[str, str] | None = None,
) -> uuid.UUID:
    """Add an event to the caller's transaction; it is published only if that commits.

    Does not commit. The current trace context is captured now, so the consumer's
    work joins the trace of the request that caused the event.
    """
    topic = str(topic)
    eid = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
    stored = inject_trace_headers(headers)
    stored[EVENT_ID_HEADER] = str(eid)
    await session.execute(
        Outbox.__table__.insert().values(
            event_id=eid,
            topic=topic,
            key=key.encode() if isinstance(key, str) else key,
            payload=payload,
            headers=stored,
        )
    )
    # Delivered at commit only (and dropped on rollback): wakes relays at once.
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    return eid


class RelayError(Exception):
    """The broker refused or timed out on a row; the row stays unsent for a retry."""


@dataclass(frozen=True)
class _Row:
    id: int
    topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, str]


class OutboxRelay:
    """Publishes outbox rows to Kafka in id order, at least once, surviving crashes.

    Each round claims up to ``batch_size`` unsent rows with ``FOR UPDATE SKIP
    LOCKED``, sends them (waiting for acks), stamps the acknowledged prefix and
    commits. A broker error stops the round at the first unacknowledged row, so
    later rows never overtake it; the relay then backs off (exponential, capped)
    and tries again. With ``ordered=True`` (default) relays take a transaction
    advisory lock, so one sends at a time and the others are hot standbys: order
    holds across relays. With ``ordered=False`` several relays share the work
    (SKIP LOCKED keeps them off each other's rows) and order holds only per relay.

    ``topics`` (a service passes ``reels.topics.produced_by("svc_x")``) limits the
    relay to the rows of the topics its service owns, so each service publishes its
    own events (one owner per topic; the PRODUCER span is the owner's) and the
    ordered-mode lock is per topic set, so one service's relays never wait on
    another's. Without ``topics`` the relay sends every row (tools, tests).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: EventProducer | None = None,
        *,
        bootstrap: str | None = None,
        client_id: str = "outbox-relay",
        batch_size: int = 100,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
        ordered: bool = True,
        listen: bool = True,
        create_topics: bool = True,
        topics: Iterable[Topic | str] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.producer = producer or EventProducer(bootstrap, client_id=client_id)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.ordered = ordered
        self.listen = listen
        self.create_topics = create_topics
        self.topics = sorted({str(t) for t in topics}) if topics is not None else None
        self.lock_key = (
            RELAY_LOCK_KEY
            if self.topics is None
            else zlib.crc32(",".join(self.topics).encode()) & 0x7FFFFFFF
        )
        self.sent = 0
        """Rows this relay stamped as sent (for metrics and tests)."""
        self._known_topics: set[str] = set()
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()

    def stop(self) -> None:
        """Ask ``run()`` to return after the current round."""
        self._stopping.set()
        self._wakeup.set()

    async def drain_once(self) -> int:
        """One round: claim, send, stamp. Returns rows sent; raises RelayError on broker trouble."""
        error: BaseException | None = None
        async with self.sessionmaker() as session, session.begin():
            if self.ordered:
                got = await session.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key)))
                if not got:
                    return 0
            unsent = select(
                Outbox.id, Outbox.topic, Outbox.key, Outbox.payload, Outbox.headers
            ).where(Outbox.sent_at.is_(None))
            if self.topics is not None:
                unsent = unsent.where(Outbox.topic.in_(self.topics))
            result = await session.execute(
                unsent.order_by(Outbox.id).limit(self.batch_size).with_for_update(skip_locked=True)
            )
            rows = [_Row(*r) for r in result.all()]
            if not rows:
                return 0
            acked: list[int] = []
            # One PRODUCER span per record, child of the context stored with the row.
            publishing = [start_publish_span(r.topic, r.headers) for r in rows]
            results: list[RecordMetadata | Exception] = []
            try:
                await self._ensure_topics({r.topic for r in rows})
                results = await self.producer.send_many(
                    [
                        OutgoingEvent(r.topic, r.key, r.payload, headers)
                        for r, (_span, headers) in zip(rows, publishing, strict=True)
                    ]
                )
            except Exception as exc:  # noqa: BLE001 - broker trouble of any kind: retry later
                results = [exc]
            finally:
                for index, (span, _headers) in enumerate(publishing):
                    end_publish_span(span, results[index] if index < len(results) else None)
            for row, res in zip(rows, results, strict=False):
                if isinstance(res, BaseException):
                    error = res
                    await session.execute(
                        update(Outbox)
                        .where(Outbox.id == row.id)
                        .values(attempts=Outbox.attempts + 1, last_error=repr(res)[:2000])
                    )
                    break
                acked.append(row.id)
            if error is None and len(acked) < len(rows):
                error = RelayError("producer returned fewer results than rows")
            if acked:
                await session.execute(
                    update(Outbox)
                    .where(Outbox.id.in_(acked))
                    .values(sent_at=func.now(), attempts=Outbox.attempts + 1, last_error=None)
                )
        self.sent += len(acked)
        if error is not None:
            self._known_topics.clear()  # the broker may have restarted and lost them
            raise RelayError(f"sent {len(acked)} of {len(rows)} rows: {error!r}") from error
        return len(acked)

    async def _ensure_topics(self, topics: set[str]) -> None:
        """Create missing topics before the producer's metadata request auto-creates them."""
        missing = topics - self._known_topics
        if missing and self.create_topics:
            await ensure_topics(missing, bootstrap=self.producer.bootstrap)
        self._known_topics |= missing

    async def _start_producer(self) -> None:
        """Start the producer, retrying (capped backoff, jitter) until a broker answers."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.producer.start()
                return
            except Exception as exc:  # noqa: BLE001 - broker not reachable yet
                report_not_ready(f"Kafka unreachable: {exc}")
                failures += 1
                delay = min(self.max_backoff, 0.25 * 2 ** min(failures, 10))
                delay *= 0.5 + random.random() / 2
                log.warning(
                    "outbox relay: broker %s not reachable (%s); retrying in %.1fs",
                    self.producer.bootstrap,
                    exc,
                    delay,
                )
                await self._sleep(delay)

    async def run(self) -> None:
        """Start the producer, relay until ``stop()`` or cancellation, stop the producer.

        The service keeps serving without a broker: events wait in the outbox and
        broker errors only slow the relay down.
        """
        await self._start_producer()
        report_ready()
        failures = 0
        listener = asyncio.create_task(self._listen()) if self.listen else None
        try:
            while not self._stopping.is_set():
                try:
                    count = await self.drain_once()
                    if failures:
                        report_ready()
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - keep relaying whatever happened
                    report_not_ready(f"cannot relay: {exc}")
                    failures += 1
                    delay = min(self.max_backoff, 0.1 * 2 ** min(failures, 10))
                    delay *= 0.5 + random.random() / 2
                    log.warning("outbox relay: %s; retrying in %.2fs", exc, delay)
                    await self._sleep(delay)
                    continue
                if count < self.batch_size:
                    await self._sleep(self.poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
            with contextlib.suppress(Exception):
                await self.producer.stop()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def _listen(self) -> None:
        """LISTEN for enqueue notifications, so a new event goes out without waiting a poll."""
        engine = self.sessionmaker.kw.get("bind")
        url = getattr(engine, "url", None)
        if url is None:
            return
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    async for _ in conn.notifies():
                        self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling still works without it
                log.debug("outbox relay: LISTEN connection lost: %s", exc)
                await asyncio.sleep(1.0)


async def purge_sent(session: AsyncSession, older_than_s: float = 7 * 86400) -> int:
    """Delete rows sent long ago; the outbox is a queue, not an archive."""
    result = await session.execute(
        text(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL "
            "AND sent_at < now() - make_interval(secs => :age)"
        ),
        {"age": older_than_s},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _main() -> None:
    """Relay with the configured database and broker until SIGTERM/SIGINT."""
    from reels.config import platform
    from reels.db.engine import make_engine, make_sessionmaker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = platform()
    engine = make_engine(settings.database_url)
    relay = OutboxRelay(
        make_sessionmaker(engine),
        bootstrap=settings.kafka_bootstrap,
        batch_size=settings.outbox_batch,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main())
