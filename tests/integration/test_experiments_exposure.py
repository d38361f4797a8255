"""Exposure recording against real Redis, Postgres (the outbox) and a Tansu broker.

Once per (user, experiment, phase): Redis claims it, the outbox's unique event id
catches what Redis missed (flushed, down), and svc_rank's relay sends it to Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from reels.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import cache, topics
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EVENT_ID_HEADER, EventProducer, from_kafka_headers
from reels.outbox import OutboxRelay
from reels_dev.infra.process import free_port
from svc_rank.experiments import (
    Arm,
    Experiment,
    ExperimentArms,
    Experiments,
    ExposureRecorder,
    Outcome,
    RankingConfig,
)
from svc_rank.experiments.exposure import FEED_EXPOSURES, dedup_key, exposure_event_id

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

EXP = Experiment.start(
    "ranker-v2",
    [Arm("control", 5000), Arm("treatment", 5000, RankingConfig.of(ranker_model_version="2"))],
)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    prefix = f"test-{uuid.uuid4().hex}:"
    cache.set_key_prefix(prefix)
    client = cache.redis_client()
    try:
        yield client
    finally:
        await cache.delete_prefix(client, prefix)
        await client.aclose()
        cache.set_key_prefix(None)


@pytest.fixture
def recorder(
    sessionmaker: async_sessionmaker[AsyncSession], redis: aioredis.Redis
) -> ExposureRecorder:
    return ExposureRecorder(sessionmaker, redis, clock=lambda: T0)


async def _outbox_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            text("SELECT event_id, key FROM outbox WHERE topic = :t ORDER BY id"),
            {"t": FEED_EXPOSURES.name},
        )
        return [(str(r.event_id), bytes(r.key).decode()) for r in rows]


async def test_an_exposure_is_recorded_once_per_user_and_phase(
    recorder: ExposureRecorder,
    redis: aioredis.Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    treatment = EXP.arm("treatment")
    assert await recorder.record(EXP, treatment, "user-1", request_id="r1") is Outcome.RECORDED
    assert await recorder.record(EXP, treatment, "user-1", request_id="r2") is Outcome.DUPLICATE
    key = dedup_key(EXP.experiment_id, EXP.phase, "user-1")
    assert await redis.get(key) == b"done"
    assert 6 * 86400 * 1000 < await redis.pttl(key) <= 7 * 86400 * 1000

    # A new phase is a new exposure.
    p2 = EXP.next_phase()
    assert await recorder.record(p2, p2.arm("treatment"), "user-1") is Outcome.RECORDED
    rows = await _outbox_rows(sessionmaker)
    assert rows == [
        (str(exposure_event_id(EXP.experiment_id, 1, "user-1")), "user-1"),
        (str(exposure_event_id(EXP.experiment_id, 2, "user-1")), "user-1"),
    ]
    assert (recorder.recorded, recorder.duplicates, recorder.failures) == (2, 1, 0)


async def test_concurrent_pages_record_one_exposure(
    recorder: ExposureRecorder, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    arm = EXP.arm("control")
    outcomes = await asyncio.gather(*(recorder.record(EXP, arm, "user-2") for _ in range(25)))
    assert outcomes.count(Outcome.RECORDED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 24
    # record_soon: GetFeed does not wait; drain() does.
    tasks = [recorder.record_soon(EXP, arm, f"user-{i}") for i in range(3, 13)]
    await recorder.drain()
    assert all(t.result() is Outcome.RECORDED for t in tasks)
    assert len(await _outbox_rows(sessionmaker)) == 11


async def test_postgres_catches_what_redis_lost(
    recorder: ExposureRecorder,
    redis: aioredis.Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    arm = EXP.arm("control")
    assert await recorder.record(EXP, arm, "user-3") is Outcome.RECORDED
    await redis.delete(dedup_key(EXP.experiment_id, EXP.phase, "user-3"))  # flushed / expired
    assert await recorder.record(EXP, arm, "user-3") is Outcome.DUPLICATE
    assert len(await _outbox_rows(sessionmaker)) == 1
    # ... and marks it done again, so the next page is a Redis hit only.
    assert await redis.get(dedup_key(EXP.experiment_id, EXP.phase, "user-3")) == b"done"

    # Redis down: Postgres alone de-duplicates; the feed never sees an error.
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    no_redis = ExposureRecorder(sessionmaker, dead)
    try:
        assert await no_redis.record(EXP, arm, "user-4") is Outcome.RECORDED
        assert await no_redis.record(EXP, arm, "user-4") is Outcome.DUPLICATE
        assert await no_redis.record(EXP, arm, "user-3") is Outcome.DUPLICATE
        assert no_redis.failures == 0
    finally:
        await dead.aclose()
    assert len(await _outbox_rows(sessionmaker)) == 2


async def test_a_database_failure_releases_the_claim(
    recorder: ExposureRecorder,
    redis: aioredis.Redis,
    migrated_database_url: str,
) -> None:
    engine = make_engine(
        migrated_database_url.rsplit("/", 1)[0] + f"/no_such_db_{uuid.uuid4().hex[:8]}"
    )
    try:
        broken = ExposureRecorder(make_sessionmaker(engine), redis)
        arm = EXP.arm("treatment")
        assert await broken.record(EXP, arm, "user-5") is Outcome.FAILED
        assert broken.failures == 1
        assert await redis.get(dedup_key(EXP.experiment_id, EXP.phase, "user-5")) is None
    finally:
        await engine.dispose()
    # The next page (database back) records it.
    assert await recorder.record(EXP, arm, "user-5") is Outcome.RECORDED


async def _read(bootstrap: str, topic: str, settle: float = 1.0) -> list[tuple[bytes, bytes, str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes, bytes, str]] = []
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while loop.time() - idle_since < settle:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    out.append((r.key, r.value, from_kafka_headers(r.headers)[EVENT_ID_HEADER]))
                    idle_since = loop.time()
        return out
    finally:
        await consumer.stop()


async def test_svc_ranks_relay_sends_exposures_to_kafka(
    recorder: ExposureRecorder,
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
) -> None:
    await kafka.create_topics(FEED_EXPOSURES.name)
    users = [f"user-k{i}" for i in range(5)]
    for user in users:
        arm = EXP.arm("treatment" if user.endswith(("1", "3")) else "control")
        assert await recorder.record(EXP, arm, user, request_id=f"req-{user}") is Outcome.RECORDED
        assert await recorder.record(EXP, arm, user) is Outcome.DUPLICATE

    async with EventProducer(kafka.bootstrap) as producer:
        relay = OutboxRelay(
            sessionmaker, producer, listen=False, topics=topics.produced_by("svc_rank")
        )
        assert await relay.drain_once() == len(users)
        assert await relay.drain_once() == 0

    records = await _read(kafka.bootstrap, FEED_EXPOSURES.name)
    assert sorted(k.decode() for k, _, _ in records) == users  # keyed by user
    for key, value, event_id in records:
        event = FEED_EXPOSURES.parse(value)
        assert isinstance(event, events_pb2.FeedExposure)
        assert event.user_id == key.decode() and event.request_id == f"req-{event.user_id}"
        assert (
            event_id
            == event.meta.event_id
            == str(exposure_event_id(EXP.experiment_id, EXP.phase, event.user_id))
        )
        assert event.ranker_model_version == ("2" if event.arm == "treatment" else "")
        assert event.exposed_at.ToDatetime(tzinfo=UTC) == T0


async def test_the_pipeline_hook_logs_served_arms_only(
    recorder: ExposureRecorder, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    arms = ExperimentArms(Experiments.of([EXP]), recorder)
    label, _ = arms("user-h1", None)
    task = arms.served("user-h1", label, request_id="req-h1")
    assert task is not None and await task is Outcome.RECORDED
    again = arms.served("user-h1", label)
    assert again is not None and await again is Outcome.DUPLICATE
    other = "treatment" if label.endswith("control") else "control"
    forced, _ = arms("user-h2", other)
    if forced != arms("user-h2", None)[0]:
        assert arms.served("user-h2", forced) is None  # forced: not an exposure
    assert [r[1] for r in await _outbox_rows(sessionmaker)] == ["user-h1"]
