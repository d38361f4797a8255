"""svc_transcode's composition root: the typed App that ``python -m svc_transcode`` serves.

One process serves TranscodeService (the job API) and, under its supervisor, runs the
``video.uploaded`` consumer, the transcode worker (with its embeddings backfill) and
an outbox relay. Each of the three
can be switched off (Settings: ``consumer``, ``worker``, ``relay``) so a deployment can
run API-only or worker-only processes. None of them needs the broker at startup: each
keeps retrying in the background, so the service comes up while Kafka is still starting.

Which loops are *required* (gRPC health NOT_SERVING while one is down):

* worker: required. It handles database outages itself, so it goes down only on a
  bug; a process whose worker crash-loops is not doing its job and should be seen.
* consumer: not required. A broker outage must not take the job API out of rotation;
  queued jobs keep running and the group resumes from its committed offsets.
* relay: not required. Outcomes wait in the outbox until a broker answers.
* review-consumer (with the consumer): moderators' decisions on held videos
  (``video.moderated``, review_consumer.py); not required, like the consumer.
* embeddings-backfill (with the worker, unless ``REELS_EMBEDDINGS=off``): not
  required. It only fills in vectors of videos already published; while Triton is
  down it keeps retrying on its own backoff (svc_transcode/backfill.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from reels import topics
from reels.auth import ServiceTokenSigner
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EventProducer, IdempotentConsumer
from reels.outbox import OutboxRelay
from reels.server import AppBase, Registration
from reels.storage import ObjectStore, open_object_store
from reels.supervise import Supervisor
from svc_transcode.backfill import EmbeddingBackfill
from svc_transcode.consumer import make_consumer
from svc_transcode.embeddings import NoEmbedder, TritonEmbedder, VideoEmbedder
from svc_transcode.nsfw import NoNsfwClassifier, NsfwClassifier, TritonNsfwClassifier
from svc_transcode.review_consumer import make_consumer as make_review_consumer
from svc_transcode.server import TranscodeService, registrations
from svc_transcode.settings import Settings
from svc_transcode.status import (
    NoStatusReporter,
    ServiceCredentials,
    StatusReporter,
    UploadStatusReporter,
)
from svc_transcode.worker import TranscodeWorker

log = logging.getLogger(__name__)


@dataclass
class App(AppBase):
    """The job API, consumer, worker and outbox relay of svc_transcode.

    ``store``, ``reporter`` and ``embedder`` may be given (tests); otherwise ``start()``
    makes them from ``settings``. ``stop()`` drains in a safe order.
    """

    settings: Settings
    store: ObjectStore | None = None
    reporter: StatusReporter | None = None
    embedder: VideoEmbedder | None = None
    classifier: NsfwClassifier | None = None
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("transcode"))
    name: str = "transcode"
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    worker: TranscodeWorker | None = None
    backfill: EmbeddingBackfill | None = None
    consumer: IdempotentConsumer | None = None
    review_consumer: IdempotentConsumer | None = None
    relay: OutboxRelay | None = None
    _stopping: bool = False
    _loops_released: asyncio.Event = field(default_factory=asyncio.Event)

    def _default_reporter(self) -> StatusReporter:
        if not self.settings.report_status:
            log.warning("REELS_TRANSCODE_REPORT_STATUS=off: video status is not reported")
            return NoStatusReporter()
        credentials = ServiceCredentials(
            self.platform.service_token, ServiceTokenSigner(self.platform.auth)
        )
        return UploadStatusReporter(
            self.platform.upload_addr, credentials, timeout_s=self.settings.status_timeout_s
        )

    def _default_embedder(self) -> VideoEmbedder:
        if not self.settings.embeddings:
            return NoEmbedder()
        return TritonEmbedder(
            self.platform.triton_addr, timeout_s=self.settings.embeddings_timeout_s
        )

    def _default_classifier(self) -> NsfwClassifier:
        if not self.settings.nsfw_moderation:
            log.warning("REELS_NSFW_MODERATION=off: videos publish without NSFW moderation")
            return NoNsfwClassifier()
        return TritonNsfwClassifier(
            self.platform.triton_addr, timeout_s=self.settings.nsfw_timeout_s
        )

    def _supervise(self, name: str, run: Callable[[], Awaitable[None]], *, required: bool) -> None:
        async def loop() -> None:
            await run()
            # run() returns by itself once stop() asked it to: wait for the supervisor
            # to stop too (then it does not restart us), rather than being restarted.
            if self._stopping:
                await self._loops_released.wait()

        self.supervisor.add(name, loop, required=required)

    async def start(self) -> None:
        """Open the database and store, start the enabled loops; returns at once."""
        platform, settings = self.platform, self.settings
        self.engine = make_engine(platform.database_url)
        sessionmaker = self.sessionmaker = make_sessionmaker(self.engine)
        self.store = self.store or open_object_store(platform.storage_url)
        self.reporter = self.reporter or self._default_reporter()
        self.embedder = self.embedder or self._default_embedder()
        self.classifier = self.classifier or self._default_classifier()
        config = settings.worker_config
        if settings.worker:
            self.worker = TranscodeWorker(
                sessionmaker,
                self.store,
                self.reporter,
                self.embedder,
                config,
                classifier=self.classifier,
            )
            self._supervise("worker", self.worker.run, required=True)
            if self.embedder.enabled:
                self.backfill = EmbeddingBackfill(
                    sessionmaker,
                    self.embedder,
                    config,
                    lease_s=max(60.0, 3 * settings.embeddings_timeout_s),
                )
                self._supervise("embeddings-backfill", self.backfill.run, required=False)
        if settings.consumer:
            self.consumer = make_consumer(
                sessionmaker,
                max_attempts=config.max_attempts,
                bootstrap=platform.kafka_bootstrap,
                session_timeout_ms=platform.kafka_session_timeout_ms,
            )
            self._supervise("consumer", self.consumer.run, required=False)
            # Moderators' decisions on held videos (svc_transcode/review_consumer.py).
            self.review_consumer = make_review_consumer(
                sessionmaker,
                bootstrap=platform.kafka_bootstrap,
                session_timeout_ms=platform.kafka_session_timeout_ms,
                embeddings_retry_in_s=(
                    config.embeddings_retry_min_s if self.embedder.enabled else None
                ),
            )
            self._supervise("review-consumer", self.review_consumer.run, required=False)
        if settings.relay:
            self.relay = OutboxRelay(
                sessionmaker,
                EventProducer(
                    platform.kafka_bootstrap,
                    idempotence=platform.kafka_idempotence,
                    client_id="svc_transcode",
                ),
                batch_size=platform.outbox_batch,
                topics=topics.produced_by("svc_transcode"),
            )
            self._supervise("outbox-relay", self.relay.run, required=False)
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        assert self.sessionmaker is not None and self.reporter is not None, "start() first"
        return registrations(TranscodeService(self.sessionmaker, self.reporter))

    async def stop(self) -> None:
        """Drain: stop taking events and jobs, let running jobs finish (up to the grace
        period) or give their leases back, let the relay send what the jobs wrote, then
        stop every loop and close the clients."""
        self._stopping = True
        if self.consumer is not None:
            await self.consumer.stop()
        if self.review_consumer is not None:
            await self.review_consumer.stop()
        if self.worker is not None:
            await self.worker.stop(self.server.grace_seconds)
        if self.backfill is not None:
            await self.backfill.stop()
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.relay.drain_once(), 5.0)
            self.relay.stop()
        self._loops_released.set()
        await self.supervisor.stop()
        if self.reporter is not None:
            await self.reporter.close()
        if self.embedder is not None:
            await self.embedder.close()
        if self.classifier is not None:
            await self.classifier.close()
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing is opened until ``start()``."""
    return App(settings=settings)
