"""The dev broker alone: what a kill -9 loses, and what the journal costs per event.

Two brokers, each started the way the test fixtures and `make up` start them
(reels_dev.infra.tansu): the bare memory-only Tansu (what `make up` ran before issue 14)
and Tansu behind its PostgreSQL journal (reels_dev.infra.tansu_journal, the default now).

1. Loss: N events acknowledged with acks=all, broker SIGKILLed and started again, then a
   fresh consumer group reads the topic from the start: events read / events acknowledged.
2. Throughput: M events (200-byte payloads, keyed, send_many in chunks of 500 as the
   player-event path does) from P concurrent producers, acks=all: events/s for each
   broker in the same run; the bare broker is the baseline.

Loopback only; bounded (N=5,000, M=40,000 by default; BENCH_BROKER_N / _M / _P).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer  # noqa: E402

from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.events import EVENT_ID_HEADER, EventProducer, OutgoingEvent, ensure_topics  # noqa: E402
from reels_dev.infra.process import free_port  # noqa: E402
from reels_dev.infra.tansu import tansu_process  # noqa: E402

N = int(os.environ.get("BENCH_BROKER_N", "5000"))
M = int(os.environ.get("BENCH_BROKER_M", "40000"))
P = int(os.environ.get("BENCH_BROKER_P", "4"))
PAYLOAD = b"x" * 200
LOGS = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_broker"


class Broker:
    def __init__(self, durable: bool) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.journal = (
            database_url().replace(
                database_url().rsplit("/", 1)[1], f"reels_bench_broker_{uuid.uuid4().hex[:8]}"
            )
            if durable
            else None
        )
        self.proc = tansu_process(self.port, log_dir=LOGS, journal_url=self.journal)

    async def start(self) -> None:
        if self.journal:
            await create_database(self.journal)
        await asyncio.to_thread(self.proc.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.proc.stop, 5.0)
        if self.journal:
            await drop_database(self.journal)


def _events(topic: str, n: int) -> list[OutgoingEvent]:
    return [
        OutgoingEvent(topic, f"user{i % 97}", PAYLOAD, {EVENT_ID_HEADER: uuid.uuid4().hex})
        for i in range(n)
    ]


async def _produce(bootstrap: str, events: list[OutgoingEvent]) -> None:
    async with EventProducer(bootstrap, max_batch_size=262_144) as producer:
        for i in range(0, len(events), 500):
            results = await producer.send_many(events[i : i + 500])
            bad = [r for r in results if isinstance(r, Exception)]
            if bad:
                raise RuntimeError(f"not acknowledged: {bad[0]!r}")


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"count.{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[bytes] = set()
    idle = time.monotonic()
    try:
        while time.monotonic() - idle < 4:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    seen.add(dict(r.headers)[EVENT_ID_HEADER])
                idle = time.monotonic()
    finally:
        await consumer.stop()
    return len(seen)


async def loss(durable: bool) -> tuple[int, float]:
    broker = Broker(durable)
    await broker.start()
    try:
        topic = f"bench.loss.{uuid.uuid4().hex[:6]}"
        await ensure_topics([topic], partitions=3, bootstrap=broker.bootstrap)
        await _produce(broker.bootstrap, _events(topic, N))
        await asyncio.to_thread(broker.proc.kill)
        t0 = time.monotonic()
        await asyncio.to_thread(broker.proc.start)
        recovered = time.monotonic() - t0
        if not durable:  # what the fixture did: recreate the topic the broker forgot
            await ensure_topics([topic], partitions=3, bootstrap=broker.bootstrap)
        return N - await _count(broker.bootstrap, topic), recovered
    finally:
        await broker.stop()


async def throughput(durable: bool) -> float:
    broker = Broker(durable)
    await broker.start()
    try:
        topic = f"bench.rate.{uuid.uuid4().hex[:6]}"
        await ensure_topics([topic], partitions=3, bootstrap=broker.bootstrap)
        await _produce(broker.bootstrap, _events(topic, 1000))  # warm up
        chunks = [_events(topic, M // P) for _ in range(P)]
        t0 = time.monotonic()
        await asyncio.gather(*(_produce(broker.bootstrap, c) for c in chunks))
        return (M // P * P) / (time.monotonic() - t0)
    finally:
        await broker.stop()


async def main() -> None:
    print(f"loss after kill -9 + restart, {N} events acknowledged (acks=all):")
    for durable, name in ((False, "memory-only Tansu (before)"), (True, "Tansu + PG journal")):
        lost, recovered = await loss(durable)
        print(f"  {name:28s} lost {lost:6d} of {N} ({lost / N:.0%}); back in {recovered:.2f} s")
    print(f"produce throughput, {M} events x 200 B, {P} producers, acks=all:")
    base = await throughput(False)
    journaled = await throughput(True)
    print(f"  {'memory-only Tansu (baseline)':28s} {base:10,.0f} events/s")
    print(f"  {'Tansu + PG journal':28s} {journaled:10,.0f} events/s ({journaled / base:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
