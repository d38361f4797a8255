"""The dev broker keeps what it acknowledged: kill -9 and restart lose nothing.

The broker runs as `make up` runs it (reels_dev.infra.tansu behind its PostgreSQL
journal, tests/fixtures/infra.py TansuBroker). Events are acknowledged with acks=all,
half of them are consumed and committed, the broker is SIGKILLed and started again;
a consumer of the same group must then read exactly the other half (nothing lost,
nothing read twice), topics keep their partitions, and new records follow the old ones.
What the bare memory-only broker loses in the same scenario: bench/bench_broker.py.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from reels.events import EVENT_ID_HEADER, EventProducer, OutgoingEvent
from reels_dev.infra.tansu_journal import translate
from tests.fixtures.infra import TansuBroker

N = 600
PARTITIONS = 3


def _events(topic: str, n: int) -> list[OutgoingEvent]:
    return [
        OutgoingEvent(
            topic, f"k{i % 17}", f"payload {i}".encode(), {EVENT_ID_HEADER: uuid.uuid4().hex}
        )
        for i in range(n)
    ]


def _event_id(record: object) -> str:
    return dict(record.headers)[EVENT_ID_HEADER].decode()  # type: ignore[attr-defined]


async def _produce(bootstrap: str, events: list[OutgoingEvent]) -> dict[int, list[int]]:
    """Send with acks=all; partition -> the offsets the broker acknowledged."""
    async with EventProducer(bootstrap) as producer:
        results = await producer.send_many(events)
    failed = [r for r in results if isinstance(r, Exception)]
    assert failed == [], f"not acknowledged: {failed[:3]}"
    offsets: dict[int, list[int]] = {}
    for r in results:
        offsets.setdefault(r.partition, []).append(r.offset)  # type: ignore[union-attr]
    return offsets


async def _consume(
    bootstrap: str, topic: str, group: str, limit: int | None, commit: bool
) -> list[str]:
    """Read up to ``limit`` records (None: until the topic is drained) as group ``group``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen: list[str] = []
    try:
        idle_since = time.monotonic()
        while limit is None or len(seen) < limit:
            batch = await consumer.getmany(
                timeout_ms=500, max_records=None if limit is None else limit - len(seen)
            )
            records = [r for rs in batch.values() for r in rs]
            seen += [_event_id(r) for r in records]
            if records:
                idle_since = time.monotonic()
            elif limit is None and seen and time.monotonic() - idle_since > 3:
                break
            elif time.monotonic() - idle_since > 30:
                break
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def test_acknowledged_events_and_committed_offsets_survive_kill_9(tmp_path: Path) -> None:
    broker = TansuBroker(tmp_path)
    await broker.start()
    try:
        topic, group = f"durable.{uuid.uuid4().hex[:8]}", f"g.{uuid.uuid4().hex[:8]}"
        await broker.create_topics(topic)
        events = _events(topic, N)
        before = await _produce(broker.bootstrap, events)
        sent = {e.headers[EVENT_ID_HEADER] for e in events}

        first = await _consume(broker.bootstrap, topic, group, N // 2, commit=True)
        assert len(first) == N // 2

        await broker.kill()  # SIGKILL: the broker's memory is gone
        started = time.monotonic()
        await broker.start()
        recovered = time.monotonic() - started
        print(f"\nbroker back after kill -9: {recovered:.2f} s (replay of {N} records)")

        rest = await _consume(broker.bootstrap, topic, group, None, commit=True)
        assert set(first).isdisjoint(rest), "committed offsets were lost: records read twice"
        assert len(rest) == N - N // 2
        assert set(first) | set(rest) == sent, "acknowledged records were lost"

        probe = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await probe.start()
        try:
            await probe.topics()  # fetches metadata
            assert len(probe.partitions_for_topic(topic) or ()) == PARTITIONS
        finally:
            await probe.stop()

        later = _events(topic, 30)
        after = await _produce(broker.bootstrap, later)
        for partition, offsets in after.items():  # the log kept its offsets: new ones follow
            assert min(offsets) == max(before.get(partition, [-1])) + 1
        tail = await _consume(broker.bootstrap, topic, group, None, commit=True)
        assert sorted(tail) == sorted(e.headers[EVENT_ID_HEADER] for e in later)
    finally:
        await broker.stop()


async def test_second_restart_replays_the_journal_again(tmp_path: Path) -> None:
    """A broker that crashed twice (records produced between the crashes) keeps all."""
    broker = TansuBroker(tmp_path)
    await broker.start()
    try:
        topic = f"durable2.{uuid.uuid4().hex[:8]}"
        await broker.create_topics(topic)
        batch1, batch2 = _events(topic, 100), _events(topic, 100)
        await _produce(broker.bootstrap, batch1)
        await broker.restart()
        await _produce(broker.bootstrap, batch2)
        await broker.restart()
        seen = await _consume(broker.bootstrap, topic, f"g.{uuid.uuid4().hex[:8]}", None, False)
        assert sorted(seen) == sorted(e.headers[EVENT_ID_HEADER] for e in batch1 + batch2)
    finally:
        await broker.stop()


def test_committed_offsets_follow_a_renumbered_log() -> None:
    """A gap (records Tansu took but never acknowledged) moves later offsets back; a
    committed offset keeps pointing at the same record, or the next one, never past it."""
    spans = [(0, 10, 0), (15, 5, 10), (20, 3, 15)]  # old 10..14 never acknowledged
    assert translate(0, spans) == 0
    assert translate(7, spans) == 7
    assert translate(12, spans) == 10  # in the gap: the next acknowledged record
    assert translate(17, spans) == 12
    assert translate(23, spans) == 18  # the end stays the end
    assert translate(5, []) == 0
