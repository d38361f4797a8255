"""svc_transcode in the background: consumer, workers, outbox relay; started and drained as one.

Runs in the same process as the gRPC API (``python -m svc_transcode``); each part can
be switched off so one deployment can run API-only or worker-only processes:
``REELS_TRANSCODE_CONSUMER=off``, ``REELS_TRANSCODE_WORKER=off``, ``REELS_TRANSCODE_RELAY=off``.
None of them needs the broker at startup: each keeps retrying in the background, so
the service comes up (and serves health) while Kafka is still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.events import EventProducer, IdempotentConsumer, kafka_bootstrap
from reels.outbox import OutboxRelay
from reels.storage import ObjectStore
from svc_transcode.consumer import make_consumer
from svc_transcode.embeddings import TextEmbedder
from svc_transcode.status import StatusReporter
from svc_transcode.worker import TranscodeWorker, WorkerConfig

log = logging.getLogger(__name__)


def _enabled(name: str) -> bool:
    return os.environ.get(name, "on").lower() not in ("off", "0", "false", "no")


class TranscodeRuntime:
    """Owns the background tasks; ``stop()`` drains them in a safe order."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        reporter: StatusReporter,
        embedder: TextEmbedder,
        config: WorkerConfig | None = None,
        *,
        bootstrap: str | None = None,
        consumer: bool | None = None,
        worker: bool | None = None,
        relay: bool | None = None,
        consumer_options: dict[str, object] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.config = config or WorkerConfig.from_env()
        self.bootstrap = bootstrap or kafka_bootstrap()
        self.reporter = reporter
        self.embedder = embedder
        self.worker: TranscodeWorker | None = None
        self.consumer: IdempotentConsumer | None = None
        self.relay: OutboxRelay | None = None
        self._producer: EventProducer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        if worker if worker is not None else _enabled("REELS_TRANSCODE_WORKER"):
            self.worker = TranscodeWorker(sessionmaker, store, reporter, embedder, self.config)
        if consumer if consumer is not None else _enabled("REELS_TRANSCODE_CONSUMER"):
            self.consumer = make_consumer(
                sessionmaker,
                max_attempts=self.config.max_attempts,
                bootstrap=self.bootstrap,
                **(consumer_options or {}),
            )
        self._relay_on = relay if relay is not None else _enabled("REELS_TRANSCODE_RELAY")

    async def start(self) -> None:
        """Start every enabled part in the background and return at once."""
        if self.worker is not None:
            self._tasks["worker"] = asyncio.create_task(self.worker.run(), name="transcode-worker")
        if self.consumer is not None:
            self._tasks["consumer"] = asyncio.create_task(
                self._consume(self.consumer), name="transcode-consumer"
            )
        if self._relay_on:
            self._tasks["relay"] = asyncio.create_task(self._relay(), name="transcode-relay")

    async def _consume(self, consumer: IdempotentConsumer) -> None:
        # run() connects (and reconnects) by itself; it only needs the broker eventually.
        while True:
            try:
                await consumer.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep consuming whatever happened
                log.warning("video.uploaded consumer stopped (%r); restarting in 2s", exc)
                await asyncio.sleep(2.0)

    async def _relay(self) -> None:
        while True:
            producer = EventProducer(self.bootstrap, client_id="svc_transcode")
            try:
                await producer.start()
                break
            except Exception as exc:  # noqa: BLE001 - broker not up yet
                log.info("outbox relay: broker %s not reachable (%r); retrying",
                         self.bootstrap, exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(2.0)
        self._producer = producer
        self.relay = OutboxRelay(self.sessionmaker, producer)
        await self.relay.run()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Drain: stop taking events and jobs, let running jobs finish (up to ``grace_s``)
        or give their leases back, then let the relay send what the jobs wrote."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.worker is not None:
            await self.worker.stop(grace_s)
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.relay.drain_once(), 5.0)
            self.relay.stop()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        await self.reporter.close()
        await self.embedder.close()
