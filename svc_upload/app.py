"""svc_upload's composition root: the typed App that ``python -m svc_upload`` serves.

One process serves UploadService over gRPC and tus over HTTP (``tus.py``) on the same
upload core, scans every completed upload for malware (``scan.py``, clamd; held
uploads are retried by ``scan_jobs.ScanRetrier``), relays its outbox
(``video.uploaded``, ``video.rejected``, ``video.moderated``) to Kafka, and turns ended live
streams' recordings into videos (``recordings.py``, consuming ``streams.recordings``)
under the supervisor.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from reels import topics
from reels.cache import redis_client
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EventProducer, ensure_topics
from reels.media.probe import probe
from reels.media_signing import media_signing_key
from reels.media_urls import EXPIRY_BUCKET_S, UrlSigner
from reels.outbox import OutboxRelay
from reels.server import AppBase, Registration
from reels.storage import ObjectStore, open_object_store
from reels.supervise import Supervisor
from svc_upload.recordings import Recordings
from svc_upload.review import ReviewQueue
from svc_upload.scan import MalwareScanner
from svc_upload.scan_jobs import ScanRetrier
from svc_upload.server import UploadService, registrations
from svc_upload.settings import Settings
from svc_upload.staging import StagingArea, default_staging_dir
from svc_upload.status import StatusChannel
from svc_upload.tus import TusApp, start_http
from svc_upload.uploads import UploadCore
from svc_upload.videos import VideoBook

log = logging.getLogger(__name__)

# A fixed 8 MiB HTTP/2 receive window instead of BDP probing, which grows the window
# (and what gRPC buffers per stream) far past one chunk on a fast link. Measured on
# the upload bench: less RSS and more throughput (fewer window updates and stalls).
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
)


@dataclass
class App(AppBase):
    """Uploads (gRPC + tus), video status, and the outbox relay.

    ``store`` may be given (tests); everything else is opened by ``start()`` from
    ``settings`` and closed by ``stop()``.
    """

    settings: Settings
    store: ObjectStore | None = None
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("upload"))
    name: str = "upload"
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    redis: aioredis.Redis | None = None
    core: UploadCore | None = None
    book: VideoBook | None = None
    reviews: ReviewQueue | None = None
    tus: TusApp | None = None
    relay: OutboxRelay | None = None
    recordings: Recordings | None = None
    retrier: ScanRetrier | None = None
    http_runner: web.AppRunner | None = None
    io_threads: ThreadPoolExecutor | None = None
    http_port: int = 0
    """The tus port actually bound (``settings.http_port`` may be 0)."""

    @property
    def grpc_options(self) -> Sequence[tuple[str, Any]]:
        return GRPC_OPTIONS

    async def start(self) -> None:
        """Open the database, Redis and store clients, serve tus, start the relay.

        Nothing here waits for a remote component: the database and Redis connect on
        first use, and the relay waits for its broker in the background.
        """
        platform = self.platform
        load = self.settings.load
        # Staged-file writes, fdatasync and hashing run in threads of their own; the
        # default pool (cores + 4 threads) queued a burst's fsyncs behind each other.
        self.io_threads = ThreadPoolExecutor(load.io_threads, thread_name_prefix="upload-io")
        self.engine = make_engine(
            platform.database_url,
            pool_size=load.db_pool_size,
            max_overflow=load.db_max_overflow,
            pool_timeout=load.db_pool_timeout_s,
            # Off by default: a ping is one more round trip per session, and under a
            # burst every round trip holds a pooled connection for an event-loop turn.
            # A Postgres restart then fails the requests in flight on stale connections
            # once (503 + Retry-After); the first failure recycles the whole pool.
            pool_pre_ping=load.db_pre_ping,
        )
        self.sessionmaker = make_sessionmaker(self.engine)
        store = self.store = self.store or open_object_store(platform.storage_url)
        staging = StagingArea(
            default_staging_dir(store, self.settings.staging_dir), executor=self.io_threads
        )
        self.redis = redis_client(platform.redis_url)
        channel = StatusChannel(self.redis, prefix=platform.redis_prefix)
        scan = self.settings.scan
        scanner = MalwareScanner(scan.clamd_address, scan.timeout_s)
        self.retrier = ScanRetrier(
            self.sessionmaker, store, scanner, channel, max_backoff_s=scan.max_backoff_s
        )
        self.core = UploadCore(
            self.sessionmaker,
            store,
            staging,
            channel,
            self.settings.limits,
            probe_fn=functools.partial(probe, nice=load.verify_nice),
            scanner=scanner,
            retrier=self.retrier,
            verify_concurrency=load.verify_concurrency,
        )
        self.book = VideoBook(
            self.sessionmaker, store, staging, channel, self.settings.status_writers
        )
        # The review queue's frames: signed like every media URL (svc_stream's origin
        # verifies them), but short-lived: they show unpublished, possibly explicit images.
        frame_urls = UrlSigner(
            media_signing_key(platform),
            base_url=self.settings.media_base_url,
            ttl_s=self.settings.review_frame_url_ttl_s,
            bucket_s=min(EXPIRY_BUCKET_S, self.settings.review_frame_url_ttl_s),
        )
        self.reviews = ReviewQueue(self.sessionmaker, store, channel, frame_urls)
        self.tus = TusApp(self.core, platform.auth, verify_wait_s=load.verify_wait_s)
        self.http_runner, self.http_port = await start_http(
            self.tus, self.settings.http_host, self.settings.http_port, backlog=load.http_backlog
        )
        log.info("tus endpoint", extra={"fields": {"port": self.http_port}})
        if self.settings.relay:
            # Several instances are safe: ordered mode lets one relay send at a time.
            self.relay = OutboxRelay(
                self.sessionmaker,
                EventProducer(
                    platform.kafka_bootstrap,
                    idempotence=platform.kafka_idempotence,
                    client_id="svc_upload",
                ),
                batch_size=platform.outbox_batch,
                topics=topics.produced_by("svc_upload"),
            )
            # Not required: uploads work without a broker (events wait in the outbox),
            # so a relay in backoff must not take the service out of rotation.
            self.supervisor.add("outbox-relay", self.relay.run, required=False)
        # Not required: a stranded upload (all bytes in, not completed) waits for it.
        self.supervisor.add("complete-stranded", lambda: self.core.run_sweeper(), required=False)
        # Not required: held uploads wait in scan_jobs while clamd is away.
        self.supervisor.add("malware-scan-retry", self.retrier.run, required=False)
        if self.settings.recordings:
            self.recordings = Recordings(
                self.sessionmaker, store, staging.root / "recordings", self.settings.limits
            )
            self.supervisor.add("recordings", self._run_recordings, required=False)
        await self.supervisor.start()

    async def _run_recordings(self) -> None:
        """The streams.recordings consumer (svc_upload.recordings)."""
        assert self.recordings is not None
        platform = self.platform
        consumer = self.recordings.consumer(
            bootstrap=platform.kafka_bootstrap,
            session_timeout_ms=platform.kafka_session_timeout_ms,
        )
        try:
            await ensure_topics([topics.STREAMS_RECORDINGS], bootstrap=consumer.bootstrap)
            await consumer.start()
            self.recordings.active_consumer = consumer
            await consumer.run()
        finally:
            await consumer.stop()

    def registrations(self) -> list[Registration]:
        assert self.core is not None and self.book is not None, "start() first"
        assert self.reviews is not None, "start() first"
        return registrations(UploadService(self.core, self.book, self.reviews))

    async def stop(self) -> None:
        """Stop taking uploads (tus), stop the relay, then close the clients."""
        if self.http_runner is not None:
            await self.http_runner.cleanup()
            self.http_runner = None
        if self.core is not None:
            await self.core.stop_completing()
        if self.relay is not None:
            # Returns after its round, or is cancelled by the supervisor (which stops at
            # once, so it does not restart it): a row sent but not yet stamped is sent
            # again, and consumers deduplicate by event id.
            self.relay.stop()
        await self.supervisor.stop()
        if self.io_threads is not None:
            self.io_threads.shutdown(wait=False)
            self.io_threads = None
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing is opened until ``start()``."""
    return App(settings=settings)
