"""svc_stream's composition root: the typed App that ``python -m svc_stream`` serves.

:func:`build` makes every part from :class:`~svc_stream.settings.Settings` without
opening a connection (engines, clients and producers connect lazily); ``start()``
starts the background loops under the supervisor and returns at once, so the
service answers health (and playback) even while Kafka or the analytics store is
still coming up.

Background loops (``reels.supervise``: restarted with backoff and jitter, reasons
logged):

* ``media-origin`` — **required**: the HTTP origin that serves every signed URL
  GetPlayback and GetManifest hand out. Without it those answers point at nothing,
  so the instance reports NOT_SERVING until it listens (e.g. its port is taken).
* ``catalog`` — the ``video.published`` consumer that fills the catalog. Not
  required: every video already published stays playable from Postgres; only new
  ones wait for the broker. Taking playback down with the broker would be worse.
* ``live-streams`` — the ``streams.events`` consumer that records which live streams
  are on air (svc_stream.playback.live), so GetPlayback can hand out live master URLs.
  Not required, for the catalog's reason: streams already LIVE stay playable from
  Redis; only starts and ends wait for the broker.
* ``kafka-producer`` — creates the topics and connects RecordEvents' producer ahead
  of the first call. Not required: RecordEvents answers UNAVAILABLE (retry the
  batch) while the broker is away, which is its documented contract.
* ``analytics-sink`` — opens the analytics store (chDB allows one process per path,
  so another holder only delays it), creates the schema and consumes
  ``video.event-batches`` (and the older one-event-per-record ``video.events``),
  ``engagement.events`` and ``video.published`` into ClickHouse and
  the Redis counters. Not required: analytics RPCs answer UNAVAILABLE until the store
  is open and events wait in Kafka meanwhile; nothing is lost.
* ``trending`` — recomputes the trending set every ``trending_interval_s`` once the
  store is open. Not required: ListTrending keeps serving the last good set.
* ``outbox-relay`` — publishes the EngagementEvents written to the outbox
  (``OutboxRelay.run()``). Not required: events wait in the outbox, and engagement
  RPCs answer from Postgres, the source of truth.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from reels.v1 import stream_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from reels import topics
from reels.analytics import Analytics
from reels.cache import redis_client, set_key_prefix
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import ensure_topics
from reels.media_signing import media_signing_key
from reels.media_urls import UrlSigner
from reels.outbox import OutboxRelay
from reels.server import AppBase, Registration
from reels.storage import ObjectStore, open_object_store
from reels.supervise import Supervisor
from svc_stream.analytics import trending
from svc_stream.analytics.rpc import AnalyticsRpcs
from svc_stream.analytics.store import AnalyticsHandle
from svc_stream.engagement.rpc import EngagementRpcs
from svc_stream.events.counters import Counters
from svc_stream.events.producer import Producer
from svc_stream.events.rpc import EventsRpcs
from svc_stream.events.sink import (
    SINK_GROUP,
    SINK_TOPICS,
    AnalyticsSink,
    BatchConsumer,
    ensure_schema,
)
from svc_stream.events.validation import EventLimits
from svc_stream.playback.catalog import Catalog
from svc_stream.playback.live import LiveStreams
from svc_stream.playback.media_store import MediaStore
from svc_stream.playback.origin import MediaOrigin
from svc_stream.playback.rpc import PlaybackRpcs
from svc_stream.server import StreamService
from svc_stream.settings import Settings

# Every topic svc_stream produces or consumes (created before first use).
TOPICS = (
    topics.VIDEO_EVENT_BATCHES,
    topics.VIDEO_EVENTS,
    topics.ENGAGEMENT_EVENTS,
    topics.VIDEO_PUBLISHED,
    topics.STREAMS_EVENTS,
)


async def _park() -> None:
    """Stay up until cancelled (a loop whose work is done once it has started)."""
    await asyncio.Event().wait()


@dataclass
class App(AppBase):
    """Playback, player events, engagement and analytics: one service, four domains."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    store: ObjectStore
    catalog: Catalog
    live: LiveStreams
    signer: UrlSigner
    media: MediaStore
    origin: MediaOrigin
    producer: Producer
    counters: Counters
    analytics: AnalyticsHandle
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("stream"))
    name: str = "stream"
    # Set by the running loops (tests and metrics look at them).
    sink: AnalyticsSink | None = None
    sink_consumer: BatchConsumer | None = None
    trending_job: trending.TrendingJob | None = None
    relay: OutboxRelay | None = None

    @property
    def event_limits(self) -> EventLimits:
        s = self.settings
        return EventLimits(
            future_skew_s=s.events_future_skew_s,
            max_age_s=s.events_max_age_s,
            replay_allowance=s.events_replay_allowance,
        )

    @property
    def trending_weights(self) -> trending.Weights:
        s = self.settings
        return trending.Weights(
            completion=s.trending_w_completion,
            like=s.trending_w_like,
            share=s.trending_w_share,
            tau_s=s.trending_tau_s,
        )

    def consumer_options(self) -> dict[str, Any]:
        """Group settings shared by this service's Kafka consumers."""
        s = self.settings
        return {
            "bootstrap": self.platform.kafka_bootstrap,
            "session_timeout_ms": self.platform.kafka_session_timeout_ms,
            "heartbeat_interval_ms": s.consumer_heartbeat_ms,
            "commit_timeout": s.consumer_commit_timeout_s,
            "retry_backoff_max": s.consumer_retry_backoff_max_s,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        set_key_prefix(self.platform.redis_prefix)
        add = self.supervisor.add
        add("media-origin", self._serve_media, required=True)
        add("catalog", self._run_catalog)
        add("live-streams", self._run_live)
        add("kafka-producer", self._run_producer)
        add("analytics-sink", self._run_sink)
        add("trending", self._run_trending)
        add("outbox-relay", self._run_relay)
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        service = StreamService(
            PlaybackRpcs(self.catalog, self.signer, self.media, self.live),
            EventsRpcs(self.catalog, self.producer, self.event_limits),
            EngagementRpcs(self.catalog, self.sessionmaker),
            AnalyticsRpcs(
                self.catalog,
                self.sessionmaker,
                self.redis,
                self.analytics,
                replay_allowance=self.settings.events_replay_allowance,
            ),
        )
        return [
            (stream_pb2_grpc.add_StreamServiceServicer_to_server, service, "reels.v1.StreamService")
        ]

    async def stop(self) -> None:
        # Loops first (consumers leave their groups, the relay and origin close), then
        # what they used; the shared clients go last.
        await self.supervisor.stop()
        await self.producer.stop()
        await self.analytics.aclose()
        await self.redis.aclose()
        await self.engine.dispose()
        set_key_prefix(None)

    # ------------------------------------------------------------------ loops

    async def _serve_media(self) -> None:
        await self.origin.serve(self.settings.media_host, self.settings.media_port)

    async def _run_catalog(self) -> None:
        consumer = self.catalog.consumer(**self.consumer_options())
        try:
            await ensure_topics([topics.VIDEO_PUBLISHED], bootstrap=consumer.bootstrap)
            await consumer.start()
            self.catalog.active_consumer = consumer
            await consumer.run()
        finally:
            await consumer.stop()

    async def _run_live(self) -> None:
        consumer = self.live.consumer(**self.consumer_options())
        try:
            await ensure_topics([topics.STREAMS_EVENTS], bootstrap=consumer.bootstrap)
            await consumer.start()
            self.live.active_consumer = consumer
            await consumer.run()
        finally:
            await consumer.stop()

    async def _run_producer(self) -> None:
        await ensure_topics(TOPICS, bootstrap=self.platform.kafka_bootstrap)
        await self.producer.start()
        await _park()

    async def _open_analytics(self) -> Analytics:
        if not self.analytics.is_open:
            # Opening chDB blocks (and fails while another process holds the path).
            store = await asyncio.to_thread(Analytics, self.platform.clickhouse_dsn)
            try:
                await ensure_schema(store)
            except BaseException:
                await store.aclose()
                raise
            self.analytics.set(store)
        return self.analytics.get()

    async def _run_sink(self) -> None:
        store = await self._open_analytics()
        self.sink = AnalyticsSink(store, self.counters)
        consumer = BatchConsumer(
            SINK_TOPICS,
            SINK_GROUP,
            self.sink.apply,
            max_batch=self.settings.sink_max_batch,
            linger_s=self.settings.sink_linger_s,
            **self.consumer_options(),
        )
        self.sink_consumer = consumer
        try:
            await ensure_topics(SINK_TOPICS, bootstrap=consumer.bootstrap)
            await consumer.run()
        finally:
            await consumer.stop()

    async def _run_trending(self) -> None:
        store = await self.analytics.wait()
        job = trending.TrendingJob(
            store, self.redis, self.settings.trending_interval_s, self.trending_weights
        )
        self.trending_job = job
        await job.run()

    async def _run_relay(self) -> None:
        relay = OutboxRelay(
            self.sessionmaker,
            bootstrap=self.platform.kafka_bootstrap,
            client_id="svc_stream-outbox",
            batch_size=self.platform.outbox_batch,
            topics=topics.produced_by("svc_stream"),
        )
        self.relay = relay
        try:
            await relay.run()
        finally:
            relay.stop()


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing connects until ``start()`` (or the first call)."""
    platform = settings.platform
    engine = make_engine(platform.database_url)
    sessionmaker = make_sessionmaker(engine)
    redis = redis_client(platform.redis_url)
    store = open_object_store(platform.storage_url)
    signer = UrlSigner(
        media_signing_key(platform),
        base_url=settings.media_base_url,
        ttl_s=settings.media_url_ttl_s,
    )
    media = MediaStore(store, timeout_s=settings.media_store_timeout_s)
    return App(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=redis,
        store=store,
        catalog=Catalog(
            sessionmaker,
            positive_ttl_s=settings.catalog_positive_ttl_s,
            negative_ttl_s=settings.catalog_negative_ttl_s,
        ),
        live=LiveStreams(redis, sessionmaker, ttl_s=settings.live_state_ttl_s),
        signer=signer,
        media=media,
        origin=MediaOrigin(media, signer),
        producer=Producer(platform.kafka_bootstrap),
        counters=Counters(redis, replay_allowance=settings.events_replay_allowance),
        analytics=AnalyticsHandle(),
    )
