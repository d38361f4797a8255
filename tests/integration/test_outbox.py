"""The outbox and the idempotent consumer against real Postgres and a real Tansu broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.db.engine import make_engine
from reels.db.migrate import alembic_config, downgrade, load_models, migrate
from reels.db.models import Base
from reels.events import (
    EVENT_ID_HEADER,
    EventProducer,
    IdempotentConsumer,
    OutgoingEvent,
    ReceivedEvent,
    from_kafka_headers,
)
from reels.outbox import OutboxRelay, enqueue
from reels_dev.infra.process import REPO_ROOT
from tests.polling import eventually as _eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

# Shared infrastructure fixtures (the lead may move them into tests/conftest.py).

APP_TABLES = {"outbox", "processed_events", "videos", "uploads"}
# Short sessions: Tansu makes a group join wait about half the session timeout.
FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500, "commit_timeout": 2.0}


def _unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


async def _read_event_ids(bootstrap: str, topic: str, settle: float = 1.0) -> list[str]:
    """Every event id in the topic, read without a group (no join wait)."""
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
        ids: list[str] = []
        idle_since = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - idle_since < settle:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                ids.extend(from_kafka_headers(r.headers)[EVENT_ID_HEADER] for r in records)
                idle_since = asyncio.get_running_loop().time()
        return ids
    finally:
        await consumer.stop()


async def _enqueue_batches(
    sessionmaker: async_sessionmaker[AsyncSession], topic: str, count: int, per_tx: int
) -> list[str]:
    """Write ``count`` events through the outbox, ``per_tx`` per committed transaction."""
    ids: list[str] = []
    for start in range(0, count, per_tx):
        async with sessionmaker() as session, session.begin():
            for i in range(start, min(count, start + per_tx)):
                eid = uuid.uuid4()
                await enqueue(session, topic, f"video-{i % 7}", f"payload {i}".encode(), eid)
                ids.append(str(eid))
    return ids


async def _scalar(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(text(sql)) or 0)


# --------------------------------------------------------------------------- migrations


async def test_migrations_create_tables(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    def model_drift(conn: Connection) -> list[object]:
        return compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )

    load_models()
    try:
        await migrate(empty_database_url)
        async with engine.connect() as conn:
            assert APP_TABLES <= await conn.run_sync(tables)
            assert await conn.run_sync(model_drift) == []
            # Every service's branch is applied (`upgrade heads`).
            versions = set(
                (await conn.execute(text("SELECT version_num FROM alembic_version")))
                .scalars()
                .all()
            )
            assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())
            assert "t0004" in versions  # svc_transcode's head

        await downgrade(empty_database_url, "base")
        async with engine.connect() as conn:
            assert not (APP_TABLES & await conn.run_sync(tables))

        await migrate(empty_database_url)  # and up again: downgrade left nothing behind
        async with engine.connect() as conn:
            assert APP_TABLES <= await conn.run_sync(tables)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- outbox


async def test_outbox_row_only_written_when_transaction_commits(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    topic = _unique("outbox.commit")
    await kafka.create_topics(topic)
    rolled_back, committed = uuid.uuid4(), uuid.uuid4()

    async with sessionmaker() as session:
        await enqueue(session, topic, "k", b"never", rolled_back)
        await session.rollback()
    async with sessionmaker() as session, session.begin():
        await enqueue(session, topic, "k", b"kept", committed)

    async with EventProducer(kafka.bootstrap) as producer:
        relay = OutboxRelay(sessionmaker, producer, listen=False)
        assert await relay.drain_once() == 1
        assert await relay.drain_once() == 0

    assert await _read_event_ids(kafka.bootstrap, topic) == [str(committed)]
    async with sessionmaker() as session:
        rows = (await session.execute(text("SELECT event_id, sent_at FROM outbox"))).all()
    assert [(str(r.event_id), r.sent_at is not None) for r in rows] == [(str(committed), True)]


async def test_a_services_relay_sends_only_the_topics_it_owns(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    mine, theirs = _unique("outbox.mine"), _unique("outbox.theirs")
    await kafka.create_topics(mine, theirs)
    own, other = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        await enqueue(session, theirs, "k", b"theirs", other)
        await enqueue(session, mine, "k", b"mine", own)

    async with EventProducer(kafka.bootstrap) as producer:
        relay = OutboxRelay(sessionmaker, producer, listen=False, topics=[mine])
        assert await relay.drain_once() == 1
        assert await relay.drain_once() == 0
        assert await _read_event_ids(kafka.bootstrap, mine) == [str(own)]
        async with sessionmaker() as session:
            unsent = await session.scalar(text("SELECT event_id FROM outbox WHERE sent_at IS NULL"))
        assert str(unsent) == str(other)  # waits for its owner's relay, not lost
        owner = OutboxRelay(sessionmaker, producer, listen=False, topics=[theirs])
        assert owner.lock_key != relay.lock_key  # owners never wait on each other
        assert await owner.drain_once() == 1
    assert await _read_event_ids(kafka.bootstrap, theirs) == [str(other)]


def test_every_outbox_topic_has_one_producing_service() -> None:
    from reels import topics

    for topic in topics.REGISTRY.values():
        assert topic.producer.startswith("svc_"), topic.name
    assert {t.name for t in topics.produced_by("svc_upload")} == {
        topics.VIDEO_UPLOADED.name,
        topics.VIDEO_REJECTED.name,
        topics.VIDEO_MODERATED.name,
    }


class StallingProducer(EventProducer):
    """Sends half of its ``stall_on``-th batch to Kafka, then hangs: a relay dying mid-batch."""

    def __init__(self, bootstrap: str, stall_on: int) -> None:
        super().__init__(bootstrap)
        self.stall_on = stall_on
        self.calls = 0
        self.stalled = asyncio.Event()

    async def send_many(self, events: Sequence[OutgoingEvent]):  # noqa: ANN201
        self.calls += 1
        if self.calls == self.stall_on:
            await super().send_many(events[: len(events) // 2])
            self.stalled.set()
            await asyncio.Event().wait()
        return await super().send_many(events)


async def test_every_event_reaches_kafka_exactly_once_across_relay_and_broker_restart(
    sessionmaker: async_sessionmaker[AsyncSession],
    migrated_database_url: str,
    kafka: TansuBroker,
    tmp_path: Path,
) -> None:
    topic = _unique("outbox.restart")
    group = _unique("sink")
    await kafka.create_topics(topic)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("CREATE TABLE sink_events (n bigserial PRIMARY KEY, event_id text NOT NULL)")
        )

    async def record(session: AsyncSession, event: ReceivedEvent) -> None:
        await session.execute(
            text("INSERT INTO sink_events (event_id) VALUES (:e)"), {"e": event.event_id}
        )

    consumer = IdempotentConsumer(
        [topic], group, record, sessionmaker, bootstrap=kafka.bootstrap, **FAST_GROUP
    )
    consumer_task = asyncio.create_task(consumer.run())
    relay_process: asyncio.subprocess.Process | None = None
    written: list[str] = []
    try:
        async with asyncio.timeout(15):
            await consumer.wait_assigned()

        # 1. An in-process relay dies mid-batch: half the batch is in Kafka, unstamped.
        written += await _enqueue_batches(sessionmaker, topic, 100, per_tx=25)
        stalling = StallingProducer(kafka.bootstrap, stall_on=3)
        await stalling.start()
        relay = OutboxRelay(sessionmaker, stalling, batch_size=20)
        relay_task = asyncio.create_task(relay.run())
        async with asyncio.timeout(15):
            await stalling.stalled.wait()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await stalling.stop()
        sent_sql = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"
        assert await _scalar(sessionmaker, sent_sql) == 40  # the stalled batch rolled back

        # 2. A relay process is SIGKILLed while it works through the backlog.
        written += await _enqueue_batches(sessionmaker, topic, 100, per_tx=20)
        with open(tmp_path / "relay.log", "wb") as log:  # noqa: ASYNC230 - tiny, local
            relay_process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reels.outbox",
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "REELS_DATABASE_URL": migrated_database_url,
                    "REELS_KAFKA_BOOTSTRAP": kafka.bootstrap,
                    "REELS_OUTBOX_BATCH": "5",
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        async def relay_progressed() -> bool:
            return await _scalar(sessionmaker, sent_sql) >= 100

        await _eventually(relay_progressed, 20, "subprocess relay sent nothing")
        relay_process.kill()  # SIGKILL: no cleanup, whatever it was doing
        await relay_process.wait()
        relay_process = None

        # 3. The broker restarts and forgets every record, topic and group offset, after
        # the consumer caught up (what it had not read yet is gone with the broker's
        # memory; the relay already stamped it sent).
        async def caught_up() -> bool:
            return (
                await _scalar(
                    sessionmaker,
                    "SELECT count(*) FROM outbox o WHERE o.sent_at IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM sink_events s WHERE s.event_id = o.event_id::text)",
                )
                == 0
            )

        await _eventually(caught_up, 20, "consumer did not catch up before the restart")
        generation = consumer.generation
        await kafka.kill()
        written += await _enqueue_batches(sessionmaker, topic, 100, per_tx=50)  # broker down
        await kafka.start()  # same port, empty memory; topics recreated at once

        # Tansu forgot the group too; the consumer must notice and rejoin before new
        # records arrive (see the "broker restart" note in reels/events.py).
        async def rejoined() -> bool:
            return consumer.generation > generation and consumer.assigned.is_set()

        await _eventually(rejoined, 30, "consumer did not rejoin the restarted broker")

        # 4. A fresh relay sends the rest (and resends what was acked but never stamped).
        async with EventProducer(kafka.bootstrap) as producer:
            relay = OutboxRelay(sessionmaker, producer, batch_size=50)
            relay_task = asyncio.create_task(relay.run())

            async def all_handled() -> bool:
                unsent = await _scalar(
                    sessionmaker, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                )
                handled = await _scalar(
                    sessionmaker, "SELECT count(DISTINCT event_id) FROM sink_events"
                )
                return unsent == 0 and handled >= len(written)

            try:
                await _eventually(all_handled, 30, "not every event was handled")
            finally:
                relay.stop()
                await relay_task

        async with sessionmaker() as session:
            handled = (await session.scalars(text("SELECT event_id FROM sink_events"))).all()
        counts = Counter(handled)
        assert [eid for eid, n in counts.items() if n > 1] == []
        assert set(counts) == set(written)
        assert len(written) == 300
    finally:
        if relay_process is not None and relay_process.returncode is None:
            relay_process.kill()
            await relay_process.wait()
        await consumer.stop()
        consumer_task.cancel()
        await asyncio.gather(consumer_task, return_exceptions=True)


# --------------------------------------------------------------------------- consumer


async def test_idempotent_consumer_skips_redelivered_event(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    topic = _unique("consumer.dedup")
    await kafka.create_topics(topic)
    handled: list[str] = []

    async def handler(session: AsyncSession, event: ReceivedEvent) -> None:
        handled.append(event.event_id)

    repeated, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with EventProducer(kafka.bootstrap) as producer:
        for eid in (repeated, repeated, other, repeated):
            await producer.send(topic, "same-key", b"payload", {EVENT_ID_HEADER: eid})

    consumer = IdempotentConsumer(
        [topic], _unique("dedup"), handler, sessionmaker, bootstrap=kafka.bootstrap, **FAST_GROUP
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def done() -> bool:
            return consumer.skipped >= 2 and len(handled) >= 2

        await _eventually(done, 20, "consumer did not read the topic")
    finally:
        await consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
    assert handled == [repeated, other]
    assert consumer.skipped == 2


async def test_failed_handler_is_retried_until_it_succeeds(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    topic = _unique("consumer.retry")
    await kafka.create_topics(topic)
    attempts: Counter[str] = Counter()
    applied: list[str] = []

    async def flaky(session: AsyncSession, event: ReceivedEvent) -> None:
        attempts[event.event_id] += 1
        await session.execute(
            text("INSERT INTO processed_events (consumer_group, event_id) VALUES ('side', :e)"),
            {"e": event.event_id},
        )
        if attempts[event.event_id] < 3:
            raise RuntimeError("transient failure")
        applied.append(event.event_id)

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    async with EventProducer(kafka.bootstrap) as producer:
        for eid in (first, second):
            await producer.send(topic, "one-key", b"payload", {EVENT_ID_HEADER: eid})

    consumer = IdempotentConsumer(
        [topic],
        _unique("retry"),
        flaky,
        sessionmaker,
        bootstrap=kafka.bootstrap,
        retry_backoff_max=0.2,
        **FAST_GROUP,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def done() -> bool:
            return len(applied) == 2

        await _eventually(done, 20, "handler never succeeded")
    finally:
        await consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
    # In order, each applied once; the failed attempts' writes were rolled back.
    assert applied == [first, second]
    assert attempts == {first: 3, second: 3}
    side = await _scalar(
        sessionmaker, "SELECT count(*) FROM processed_events WHERE consumer_group = 'side'"
    )
    assert side == 2
