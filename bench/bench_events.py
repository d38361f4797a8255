"""Player events end to end into ClickHouse vs a raw chDB insert of the same rows.

End to end = RecordEvents over gRPC (JWT auth, per-item validation against the
catalog) -> Kafka (Tansu, acks=all) -> the analytics sink consumer (batches of up to
``REELS_SINK_MAX_BATCH``) -> chDB ``video_events`` (+ ``watch_history`` and the Redis
counters, which the sink writes too). The clock stops when ClickHouse holds every event.

Sink alone = a fresh sink (new consumer group, new Redis prefix, emptied tables) reading
the very records the first phase left in Kafka: the consumer, decoding, ClickHouse and
Redis without RecordEvents competing for the process.

Baseline = the same rows inserted straight into a table of the same schema, in the same
process, in the same run, in blocks of the sink's batch size: with clickhouse-connect's
row insert (what the sink did before issue 14) and with a columnar insert (the fastest
raw way we have; the ratio is taken against the faster of the two).

The clients (``--clients`` concurrent callers, batches of 500) run in a process of
their own, as players do, so the bench process is svc_stream alone. CPU per event
(user+sys; this process = svc_stream's code: RecordEvents, the producer and the sink;
the broker = Tansu and, journaled, its journal front) is printed beside the rates: on a
shared 2-core machine it is steadier than a rate.

Goals (issue 14): >= 0.5x the raw insert rate and >= 20,000 events/s.
Everything runs on loopback: a Tansu broker on a free port (behind its PostgreSQL
journal in a throwaway database, as ``make up`` runs it; ``REELS_KAFKA_JOURNAL_URL=off``:
the bare memory-only broker), a throwaway Postgres database, a Redis key prefix of its
own, chDB under a temp directory.

Run: .venv/bin/python bench/bench_events.py [--events 100000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))

import grpc  # noqa: E402
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402
from reels.v1 import common_pb2, events_pb2, stream_pb2, stream_pb2_grpc  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from reels import topics  # noqa: E402
from reels.analytics import Analytics  # noqa: E402
from reels.cache import delete_prefix, redis_client, set_key_prefix  # noqa: E402
from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels.events import ensure_topics  # noqa: E402
from reels.server import run_app  # noqa: E402
from reels_dev.infra.process import free_port  # noqa: E402
from reels_dev.infra.tansu import tansu_process  # noqa: E402
from reels_dev.keys import ensure_dev_keys, mint_token  # noqa: E402
from reels_dev.settings import InfraSettings  # noqa: E402

VIDEOS = 50
BATCH = 500
TYPES = (
    common_pb2.EventType.EVENT_TYPE_WATCH_START,
    common_pb2.EventType.EVENT_TYPE_PROGRESS_25,
    common_pb2.EventType.EVENT_TYPE_PROGRESS_50,
    common_pb2.EventType.EVENT_TYPE_PROGRESS_75,
    common_pb2.EventType.EVENT_TYPE_WATCH_COMPLETE,
)


def _batches(total: int, clients: int) -> list[list[stream_pb2.RecordEventsRequest]]:
    """Per client, its requests: sessions of 5 events over VIDEOS videos of 20 s."""
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    per_client: list[list[stream_pb2.RecordEventsRequest]] = [[] for _ in range(clients)]
    n = 0
    while n < total:
        client = (n // BATCH) % clients
        events = []
        for i in range(min(BATCH, total - n)):
            k = n + i
            session, step = divmod(k, len(TYPES))
            events.append(
                stream_pb2.PlayerEvent(
                    client_event_id=f"e{k}",
                    video_id=f"bench-v{session % VIDEOS}",
                    type=TYPES[step],
                    occurred_at=now,
                    position_seconds=step * 5.0,
                    watch_seconds=5.0 if step else 0.0,
                    rendition="720p",
                    device=common_pb2.Device.DEVICE_IOS,
                    country="US",
                    session_id=f"s{session}",
                )
            )
        per_client[client].append(stream_pb2.RecordEventsRequest(events=events))
        n += len(events)
    return per_client


def _client_process(port: int, total: int, clients: int, pipe: Any) -> None:
    """The bench's players, in a process of their own: ``clients`` concurrent callers
    of RecordEvents over one channel; sends "ready", waits for "go", then sends the
    seconds until every call was answered OK (or the error as a string)."""

    async def run() -> float:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        plan = _batches(total, clients)
        tokens = [mint_token(f"bench-user-{c}") for c in range(clients)]
        await channel.channel_ready()

        async def client(c: int) -> None:
            md = (("authorization", f"Bearer {tokens[c]}"),)
            for request in plan[c]:
                reply = await stub.RecordEvents(request, metadata=md, timeout=60)
                assert reply.accepted_count == len(request.events), reply

        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        seconds = time.perf_counter() - started
        await channel.close()
        return seconds

    try:
        pipe.send(asyncio.run(run()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which exits
        pipe.send(repr(exc))


async def _wait_count(store: Analytics, table: str, expected: int, within: float) -> None:
    deadline = time.perf_counter() + within
    while True:
        count = (await store.query_rows(f"SELECT count() FROM {table}"))[0][0]  # noqa: S608
        if count >= expected:
            return
        if time.perf_counter() > deadline:
            raise SystemExit(f"only {count} of {expected} events reached {table}")
        await asyncio.sleep(0.02)


def _self_cpu() -> float:
    """CPU seconds (user + sys) of this process so far, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + sys) of the live processes of process group ``pgid``."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[2] = pgrp; [11], [12] = utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU spent by this process and by the broker between ``start`` and ``stop``."""

    def __init__(self, broker_pgid: int) -> None:
        self.broker_pgid = broker_pgid
        self.bench = self.broker = 0.0

    def start(self) -> None:
        self._bench, self._broker = _self_cpu(), _group_cpu(self.broker_pgid)

    def stop(self) -> None:
        self.bench = _self_cpu() - self._bench
        self.broker = _group_cpu(self.broker_pgid) - self._broker

    def per_event(self, n: int) -> str:
        return (
            f"CPU/event: this process {1e6 * self.bench / n:5.0f} us, "
            f"broker {1e6 * self.broker / n:5.0f} us"
        )


async def _drain(store: Analytics, settings: object, total: int, redis_url: str) -> float:
    """The sink alone: a fresh group re-reads what phase 1 left in Kafka into emptied
    tables and a new Redis prefix; returns the seconds until ClickHouse held it all."""
    from svc_stream.events.counters import Counters
    from svc_stream.events.sink import SINK_TOPICS, AnalyticsSink, BatchConsumer

    prefix = f"reels-bench-{uuid.uuid4().hex[:8]}:"
    set_key_prefix(prefix)
    redis = redis_client(redis_url)
    try:
        for table in ("video_events", "watch_history"):
            await store.command(f"TRUNCATE TABLE {table}")
        sink = AnalyticsSink(store, Counters(redis))
        consumer = BatchConsumer(
            SINK_TOPICS,
            f"bench.drain.{uuid.uuid4().hex[:6]}",
            sink.apply,
            max_batch=settings.sink_max_batch,  # type: ignore[attr-defined]
            linger_s=settings.sink_linger_s,  # type: ignore[attr-defined]
            bootstrap=settings.platform.kafka_bootstrap,  # type: ignore[attr-defined]
        )
        await consumer.start()
        await consumer.wait_assigned()
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run())
        try:
            await _wait_count(store, "video_events", total, 300)
            return time.perf_counter() - started
        finally:
            await consumer.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
        set_key_prefix(None)


async def main(total: int, clients: int) -> None:
    from svc_stream.app import build
    from svc_stream.events.sink import SCHEMA, VIDEO_EVENT_COLUMNS, insert_columns
    from svc_stream.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    port = free_port()
    url = make_url(database_url()).set(database=f"reels_bench_{uuid.uuid4().hex[:10]}")
    url_s = url.render_as_string(hide_password=False)
    await create_database(url_s)
    journal: str | None = None
    if InfraSettings.from_env().journal_url() is not None:
        # The broker's journal in a throwaway database of its own, as the test fixture.
        journal = url.set(database=f"{url.database}_journal").render_as_string(hide_password=False)
        await create_database(journal)
    broker = tansu_process(port, log_dir=tmp, journal_url=journal)
    await asyncio.to_thread(broker.start)
    assert broker.proc is not None
    cpu = Cpu(broker.proc.pid)
    bootstrap = f"127.0.0.1:{port}"
    prefix = f"reels-bench-{uuid.uuid4().hex[:8]}:"
    dsn = f"chdb://{tmp / 'chdb'}"
    base = Settings.from_env()
    settings = dataclasses.replace(
        base,
        platform=dataclasses.replace(
            base.platform,
            database_url=url_s,
            kafka_bootstrap=bootstrap,
            kafka_session_timeout_ms=3000,
            clickhouse_dsn=dsn,
            redis_prefix=prefix,
            storage_url=(tmp / "objects").as_uri(),
        ),
        media_port=0,
        trending_interval_s=3600.0,
        consumer_heartbeat_ms=500,
    )
    redis = redis_client(settings.platform.redis_url)
    store: Analytics | None = None
    try:
        await migrate(url_s)
        await ensure_topics(
            [
                topics.VIDEO_EVENT_BATCHES,
                topics.VIDEO_EVENTS,
                topics.ENGAGEMENT_EVENTS,
                topics.VIDEO_PUBLISHED,
            ],
            bootstrap=bootstrap,
        )
        app = build(settings)
        for i in range(VIDEOS):
            await app.catalog.apply_published(
                events_pb2.VideoPublished(
                    video_id=f"bench-v{i}",
                    creator_id="bench-creator",
                    duration=duration_pb2.Duration(seconds=20),
                    master_playlist_key="m.m3u8",
                )
            )
        ensure_dev_keys()
        server = await run_app(app, port=0)
        while app.sink_consumer is None:  # noqa: ASYNC110 - set by a supervised loop
            await asyncio.sleep(0.05)
        await app.sink_consumer.wait_assigned()
        sink_store = app.analytics.get()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        # Warm-up: connections, catalog cache, topic metadata (not timed, not counted).
        warm = stream_pb2.RecordEventsRequest(
            events=[
                stream_pb2.PlayerEvent(
                    client_event_id="warm",
                    video_id="bench-v0",
                    type=TYPES[0],
                    occurred_at=timestamp_pb2.Timestamp(seconds=int(time.time())),
                )
            ]
        )
        await stub.RecordEvents(warm, metadata=(("authorization", f"Bearer {mint_token('warm')}"),))
        await _wait_count(sink_store, "video_events", 1, 30)

        # The clients run in a process of their own (as players do, elsewhere): this
        # process's CPU is then svc_stream's alone. It builds the same plan, connects,
        # and is released by the pipe once connected; it answers the acked seconds.
        ctx = multiprocessing.get_context("spawn")
        here, there = ctx.Pipe()
        load = ctx.Process(target=_client_process, args=(server.port, total, clients, there))
        load.start()
        if not await asyncio.to_thread(here.poll, 120):
            raise SystemExit("the client process did not get ready")
        here.recv()
        cpu.start()
        started = time.perf_counter()
        here.send("go")
        acked = await asyncio.to_thread(here.recv)
        await asyncio.to_thread(load.join, 30)
        if not isinstance(acked, float):
            raise SystemExit(f"the client process failed: {acked}")
        await _wait_count(sink_store, "video_events", total + 1, 300)
        e2e = time.perf_counter() - started
        cpu.stop()
        e2e_cpu = cpu.per_event(total)
        await channel.close()
        await server.stop(1.0)  # the App closes its analytics store: reopen it alone

        store = await asyncio.to_thread(Analytics, dsn)
        rows = await store.query_rows(
            f"SELECT {', '.join(VIDEO_EVENT_COLUMNS)} FROM video_events "  # noqa: S608
            "WHERE client_event_id != 'warm'"
        )
        assert len(rows) == total

        # Phase 2: the sink alone over the same records (+ the warm-up one).
        cpu.start()
        drain = await _drain(store, settings, total + 1, settings.platform.redis_url)
        cpu.stop()
        drain_cpu = cpu.per_event(total + 1)

        # Baselines: the very rows the sink wrote, straight into same-schema tables, in
        # blocks of the sink's batch size.
        block = settings.sink_max_batch
        columns = [list(c) for c in zip(*rows, strict=True)]
        raw: dict[str, float] = {}
        for name in ("rows", "columns"):
            table = f"video_events_raw_{name}"
            await store.command(SCHEMA[0].replace("video_events", table))
            started = time.perf_counter()
            for i in range(0, total, block):
                if name == "rows":
                    await store.insert_rows(table, rows[i : i + block], VIDEO_EVENT_COLUMNS)
                else:
                    part = [c[i : i + block] for c in columns]
                    await insert_columns(store, table, part, VIDEO_EVENT_COLUMNS)
            raw[name] = time.perf_counter() - started
            await _wait_count(store, table, total, 10)

        e2e_rate, drain_rate = total / e2e, (total + 1) / drain
        raw_rate = total / min(raw.values())
        mode = "journaled (PostgreSQL)" if journal else "memory-only (REELS_KAFKA_JOURNAL_URL=off)"
        print(f"events: {total} in batches of {BATCH}, {clients} concurrent clients")
        print(f"broker: Tansu, {mode}; sink batches of up to {block}")
        print(
            f"RecordEvents acked (Kafka acks=all):   {total / acked:10.0f} events/s ({acked:.2f} s)"
        )
        print(
            f"end to end into ClickHouse:           {e2e_rate:10.0f} events/s ({e2e:.2f} s)"
            f"  {e2e_cpu}"
        )
        print(
            f"sink alone (Kafka -> CH + Redis):     {drain_rate:10.0f} events/s ({drain:.2f} s)"
            f"  {drain_cpu}"
        )
        for name, seconds in raw.items():
            print(
                f"raw chDB insert, {name:7s} {block}-row blocks: "
                f"{total / seconds:10.0f} events/s ({seconds:.2f} s)"
            )
        print(
            f"ratio end-to-end / raw: {e2e_rate / raw_rate:.2f}x, sink alone / raw: "
            f"{drain_rate / raw_rate:.2f}x (raw = the faster insert; goal >= 0.5x; "
            f">= 20,000 events/s: {'met' if e2e_rate >= 20_000 else 'NOT met'})"
        )
    finally:
        if store is not None:
            await store.aclose()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await asyncio.to_thread(broker.stop, 5.0)
        await drop_database(url_s)
        if journal:
            await drop_database(journal)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.clients))
