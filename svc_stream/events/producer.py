"""The Kafka producer RecordEvents publishes with: all of a batch acknowledged, or nothing.

``publish`` sends a whole set of records and returns only when every one was
acknowledged (acks=all); anything else is UNAVAILABLE with RetryInfo, so the caller
retries the whole set (safe: every record has a deterministic event id and every
consumer of ours is idempotent by it). That answer is part of RecordEvents' contract
("nothing was recorded, retry the batch"), so it is decided here rather than left to
the interceptor's generic outage mapping: a partially acknowledged batch is no
connection error, yet the client must still retry it.

The App starts the producer in a supervised loop (a broker that is down at boot only
delays it); a publish before that, or after the client was lost, starts it on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from reels import errors
from reels.events import EventProducer, OutgoingEvent

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0


class Producer:
    """The service's Kafka producer for player events, started once and shared."""

    def __init__(
        self, bootstrap_servers: str, *, ack_timeout_ms: int = 5000, client_id: str = "svc_stream"
    ) -> None:
        self.bootstrap = bootstrap_servers
        self.ack_timeout_ms = ack_timeout_ms
        self.client_id = client_id
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
                    client_id=self.client_id,
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

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect (raises while no broker answers)."""
        await self._ensure()

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
            log.warning(
                "publish: %d of %d records not acknowledged: %r",
                len(failed) or len(events) - len(results),
                len(events),
                failed[:1],
            )
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
