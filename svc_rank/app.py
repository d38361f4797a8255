"""svc_rank's composition root: the typed App that ``python -m svc_rank`` serves.

:func:`build` makes every part from :class:`~svc_rank.settings.Settings` without
opening a connection; ``start()`` opens the channel to svc_stream and starts the
background loops under the supervisor, and returns at once, so GetFeed answers (from
whatever sources are up) while Kafka or Milvus are still coming up.

Background loops (``reels.supervise``: restarted with backoff and jitter). None is
required: each feeds one part of the ranking, and the feed degrades without it
instead of going NOT_SERVING:

* ``catalog`` — ``video.published`` → ``rank_videos`` (idempotent, Postgres).
* ``engagement`` — ``engagement.events`` → followee graph (Postgres) and affinity.
* ``watches`` — ``video.events`` → user vectors, affinity, served history (Redis).
* ``vectors`` — opens Milvus (Lite: the only process that opens its file) and copies
  the catalog's embeddings into it; while it is down the feed has no ``similar``
  recall (FEED_FALLBACK_NO_VECTORS).
* ``outbox-relay`` — the outbox relay for svc_rank's own topics (``feed.exposures``:
  experiment exposures, written by :class:`~svc_rank.experiments.ExposureRecorder`).

Experiments: ``REELS_RANK_EXPERIMENTS`` names a JSON/YAML file of the running phases
(empty: none). :func:`build` loads it once (a bad file fails the start) into an
:class:`~svc_rank.experiments.ExperimentArms`, which GetFeed asks for the arm and
tells when a page was served; ``GetExperimentResults`` reads the running phase's
per-user data from svc_stream (svc_rank/experiments/results.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as aioredis
from reels.v1 import rank_pb2_grpc, stream_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from recsim.features import N_FEATURES
from reels import topics
from reels.cache import redis_client, set_key_prefix
from reels.clients import channel
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EventConsumer, ensure_topics
from reels.outbox import OutboxRelay
from reels.server import AppBase, Registration
from reels.supervise import Supervisor
from svc_rank.experiments import ExperimentArms, Experiments, ExposureRecorder
from svc_rank.experiments.results import ResultsService
from svc_rank.feed import FeedPipeline
from svc_rank.index.catalog import Catalog
from svc_rank.index.engagement import EngagementIndexer
from svc_rank.index.vectors import VectorStore
from svc_rank.index.watches import WatchIndexer
from svc_rank.scorer import rules
from svc_rank.scorer.learned import LearnedRanker
from svc_rank.server import ArmChooser, FeedService
from svc_rank.settings import Settings
from svc_rank.stream_client import StreamClient

CONSUMED = (
    topics.VIDEO_PUBLISHED,
    topics.ENGAGEMENT_EVENTS,
    topics.VIDEO_EVENT_BATCHES,
    topics.VIDEO_EVENTS,
)


@dataclass
class App(AppBase):
    """The feed: recall, ranking, the ranked-list cache, and the indexes behind them."""

    # GetFeed answers overload itself (a stale list, svc_rank/overload.py) instead of
    # the admission control's RESOURCE_EXHAUSTED.
    self_degrading_methods = ("/reels.v1.FeedService/GetFeed",)

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    catalog: Catalog
    vectors: VectorStore
    ranker: LearnedRanker
    watches: WatchIndexer
    engagement: EngagementIndexer
    arms: ArmChooser | None = None
    """The experiments' arm chooser (None: every user gets the default ranking)."""
    experiments: Experiments | None = None
    """The running experiment phases (REELS_RANK_EXPERIMENTS; None: no experiments)."""
    recorder: ExposureRecorder | None = None
    relay: OutboxRelay | None = None
    stream_channel: grpc.aio.Channel | None = None
    pipeline: FeedPipeline | None = None
    feed_service: FeedService | None = None
    """Set by ``registrations()``; ``stop()`` lets its background URL signing finish."""
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("rank"))
    name: str = "rank"

    def consumer_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap": self.platform.kafka_bootstrap,
            "session_timeout_ms": self.platform.kafka_session_timeout_ms,
            "heartbeat_interval_ms": s.consumer_heartbeat_ms,
            "commit_timeout": s.consumer_commit_timeout_s,
            "retry_backoff_max": s.consumer_retry_backoff_max_s,
        }

    async def start(self) -> None:
        set_key_prefix(self.platform.redis_prefix)
        # grpc.aio channels belong to the running loop, so they are opened here.
        if self.stream_channel is None:
            self.stream_channel = channel(self.platform.stream_addr)
        stream = StreamClient(
            stream_pb2_grpc.StreamServiceStub(self.stream_channel),
            timeout_s=self.settings.stream_timeout_s,
        )
        self.pipeline = FeedPipeline(
            self.settings,
            sessionmaker=self.sessionmaker,
            redis=self.redis,
            catalog=self.catalog,
            vectors=self.vectors,
            stream=stream,
            ranker=self.ranker,
        )
        add = self.supervisor.add
        add("catalog", self._run_catalog)
        add("engagement", self._run_engagement)
        add("watches", self._run_watches)
        add("vectors", self.vectors.run)
        add("outbox-relay", self._run_relay)
        if self.settings.ranker_enabled:
            add("ranker-warm-up", self._keep_ranker_warm)
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        assert self.pipeline is not None, "start() first"
        assert self.stream_channel is not None
        results = None
        if self.experiments is not None:
            results = ResultsService(
                self.experiments,
                stream_pb2_grpc.StreamServiceStub(self.stream_channel),
                timeout_s=self.settings.experiment_results_timeout_s,
            )
        feed = FeedService(
            self.settings, self.pipeline, self.pipeline.stream, arms=self.arms, results=results
        )
        self.feed_service = feed
        return [(rank_pb2_grpc.add_FeedServiceServicer_to_server, feed, "reels.v1.FeedService")]

    async def stop(self) -> None:
        if self.feed_service is not None:
            await self.feed_service.close()
        if self.recorder is not None:
            await self.recorder.drain()  # exposures of the last pages reach the outbox
        await self.supervisor.stop()
        await self.ranker.close()
        if self.stream_channel is not None:
            await self.stream_channel.close()
        await self.redis.aclose()
        await self.engine.dispose()
        set_key_prefix(None)

    # ------------------------------------------------------------------ loops

    async def _consume(self, consumer: EventConsumer, owner: Any) -> None:
        try:
            await ensure_topics(consumer.topics, bootstrap=consumer.bootstrap)
            await consumer.start()
            owner.active_consumer = consumer
            await consumer.run()
        finally:
            await consumer.stop()

    async def _run_catalog(self) -> None:
        await self._consume(self.catalog.consumer(**self.consumer_options()), self.catalog)

    async def _run_engagement(self) -> None:
        await self._consume(self.engagement.consumer(**self.consumer_options()), self.engagement)

    async def _run_watches(self) -> None:
        await self._consume(self.watches.consumer(**self.consumer_options()), self.watches)

    async def _keep_ranker_warm(self) -> None:
        await self.ranker.keep_warm(N_FEATURES)

    async def _run_relay(self) -> None:
        relay = OutboxRelay(
            self.sessionmaker,
            bootstrap=self.platform.kafka_bootstrap,
            client_id="svc_rank-outbox",
            batch_size=self.platform.outbox_batch,
            topics=topics.produced_by("svc_rank"),
        )
        self.relay = relay
        try:
            await relay.run()
        finally:
            relay.stop()


def build(settings: Settings, *, arms: ArmChooser | None = None) -> App:
    """The App for ``settings``; nothing connects until ``start()`` (or the first call)."""
    platform = settings.platform
    s = settings
    engine = make_engine(platform.database_url)
    sessionmaker = make_sessionmaker(engine)
    # Short socket deadlines: a Redis outage must become a fallback within the feed's
    # budget, not a 5 s hang per request.
    redis = redis_client(platform.redis_url, socket_connect_timeout=0.25, socket_timeout=0.5)
    catalog = Catalog(
        sessionmaker,
        embedding_dim=s.embedding_dim,
        ttl_s=s.catalog_cache_ttl_s,
        max_entries=s.catalog_cache_size,
    )
    vectors = VectorStore(
        sessionmaker,
        uri=platform.milvus_uri,
        collection=s.milvus_collection,
        dim=s.embedding_dim,
        index_type=s.milvus_index,
        nlist=s.milvus_nlist,
        nprobe=s.milvus_nprobe,
        timeout_s=s.milvus_timeout_s,
        interval_s=s.indexer_interval_s,
        visual_collection=s.milvus_visual_collection,
        reupload_cosine=s.reupload_cosine,
    )
    ranker = LearnedRanker(
        platform.triton_addr,
        model=s.ranker_model,
        version=s.ranker_version,
        timeout_s=s.ranker_timeout_s,
        retry_s=s.ranker_retry_s,
    )
    experiments: Experiments | None = None
    recorder: ExposureRecorder | None = None
    if isinstance(arms, ExperimentArms):
        experiments, recorder = arms.experiments, arms.recorder
    elif arms is None and s.experiments:
        experiments = Experiments.load(s.experiments)
        recorder = ExposureRecorder(sessionmaker, redis)
        arms = ExperimentArms(
            experiments,
            recorder,
            default_weights=rules.Weights(s.w_completion, s.w_engagement, s.w_affinity, s.w_deep),
        )
    return App(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=redis,
        catalog=catalog,
        vectors=vectors,
        ranker=ranker,
        watches=WatchIndexer(redis, catalog, half_life_s=s.user_vector_half_life_s),
        engagement=EngagementIndexer(sessionmaker, redis),
        arms=arms,
        experiments=experiments,
        recorder=recorder,
    )
