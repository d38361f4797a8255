"""Kafka adapter: producer, (idempotent) consumer groups, topics and trace headers.

Payloads are opaque bytes (serialized protobuf messages from events.proto); the
event id and the W3C trace context travel in Kafka headers (``event-id``,
``traceparent``, ``tracestate``) so this module works for any message type and
consumers can deduplicate and continue a trace without decoding the payload.

Delivery is at least once end to end: producers wait for ``acks=all`` and retry,
and consumers commit offsets only after a handler succeeded. ``IdempotentConsumer``
turns that into exactly-once *effects* by recording each event id in
``processed_events`` in the same database transaction as the handler's writes.

Broker restart. The dev broker (`make up`, the test fixtures) is Tansu behind a
PostgreSQL journal (reels_dev/infra/tansu_journal.py): an acknowledged record and a
committed offset survive a kill -9, so after the restart consumers rejoin and go on
from their committed offsets, and nothing is lost or read twice. With
``REELS_KAFKA_JOURNAL_URL=off`` it is memory-only Tansu again: the new broker has
empty logs and no groups; the consumer rejoins (aiokafka sees its member id
rejected) and, with no committed offset, rereads from offset 0, and
``EventConsumer`` also rewinds when it sees that the broker lost its committed
offset. Residual gap of that mode, measured: records published in the ~1-3 s
between the restart and the rejoin can be skipped if this client fetches them from
its old position and its commit reaches the new broker before the rejoin. Apache
Kafka keeps logs and offsets across restarts and has no such gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.config import platform
from reels.supervise import LoopHandle, current_loop
from reels.topics import Topic

log = logging.getLogger(__name__)
tracer = trace.get_tracer("reels.events")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EVENT_ID_HEADER = "event-id"
# How many events a batch record (``video.event-batches``) holds: consumers size their
# batches by events, not records, without decoding the payload.
EVENT_COUNT_HEADER = "event-count"
TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_PARTITIONER = DefaultPartitioner()  # aiokafka's default: murmur2(key) over all partitions


def kafka_bootstrap() -> str:
    """Broker address: ``REELS_KAFKA_BOOTSTRAP`` (PlatformSettings)."""
    return platform().kafka_bootstrap


def default_partitions() -> int:
    """Partitions for topics we create (``REELS_KAFKA_PARTITIONS``, default 3)."""
    return platform().kafka_partitions


# --------------------------------------------------------------------------- headers


def inject_trace_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Copy of ``headers`` plus the current span's ``traceparent``/``tracestate``.

    Called where an event is *decided* (e.g. outbox enqueue inside a gRPC call), so
    the consumer's span joins the request's trace even if the relay sends it later.
    """
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_trace_context(headers: Mapping[str, str]) -> otel_context.Context:
    """OpenTelemetry context carried by an event's headers (empty context if none)."""
    return propagate.extract(dict(headers))


def start_publish_span(topic: str, headers: Mapping[str, str]) -> tuple[trace.Span, dict[str, str]]:
    """A PRODUCER span for sending one record, and the headers to send it with.

    The span's parent is the trace context already in ``headers`` (captured where the
    event was decided: an outbox row's headers hold the request's or job's context), and
    the returned headers' ``traceparent`` names the new span, so the consumer's span
    (``EventConsumer``) becomes its child: request → publish → process, one trace.
    End it with :func:`end_publish_span`.
    """
    span = tracer.start_span(
        f"{topic} publish",
        context=extract_trace_context(headers),
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": headers.get(EVENT_ID_HEADER, ""),
        },
    )
    sent = dict(headers)
    propagate.inject(sent, context=trace.set_span_in_context(span))
    return span, sent


def end_publish_span(span: trace.Span, result: RecordMetadata | BaseException | None) -> None:
    """End a :func:`start_publish_span` span with the send's outcome (None: not sent)."""
    if isinstance(result, RecordMetadata):
        span.set_attribute("messaging.destination.partition.id", str(result.partition))
        span.set_attribute("messaging.kafka.offset", result.offset)
    elif isinstance(result, BaseException):
        span.record_exception(result)
        span.set_status(trace.Status(trace.StatusCode.ERROR, repr(result)[:200]))
    else:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "not sent"))
    span.end()


def to_kafka_headers(headers: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    """Kafka wants (str, bytes) pairs; we keep headers as str -> str everywhere else."""
    return [(k, v.encode()) for k, v in (headers or {}).items()]


def from_kafka_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str -> str dict (last value wins, undecodable bytes replaced)."""
    return {k: (v or b"").decode(errors="replace") for k, v in (headers or ())}


def _key_bytes(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


# --------------------------------------------------------------------------- topics


async def ensure_topics(
    topics: Iterable[str | Topic],
    *,
    partitions: int | None = None,
    replication_factor: int = 1,
    bootstrap: str | None = None,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    Topics must be created explicitly rather than left to auto-creation: Tansu
    auto-creates a topic (4 partitions) on the first metadata request that names
    it, and being memory-only it forgets every topic on restart, so callers run
    this after each broker (re)start.
    """
    names = sorted({str(t) for t in topics})
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap or kafka_bootstrap())
    await admin.start()
    try:
        count = partitions or default_partitions()
        response = await admin.create_topics(
            [NewTopic(name, count, replication_factor) for name in names]
        )
        failures = [
            (topic, code, message)
            for topic, code, message in response.topic_errors
            if code not in (0, TOPIC_EXISTS)
        ]
        if failures:
            raise KafkaError(f"could not create topics: {failures}")
    finally:
        await admin.close()


# --------------------------------------------------------------------------- producer


@dataclass(frozen=True)
class OutgoingEvent:
    """One record to publish; ``headers`` must already hold ``event-id``."""

    topic: str
    key: bytes | str | None
    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A registry Topic (reels.topics) is accepted where a topic name is expected.
        if not isinstance(self.topic, str):
            object.__setattr__(self, "topic", str(self.topic))


class EventProducer:
    """A started aiokafka producer that waits for ``acks=all`` on every send.

    Idempotence is off by default because Tansu 0.6 answers InitProducerId with an
    error (the producer cannot start); duplicates from retries are harmless since
    every consumer of ours deduplicates by event id. Turn it on with
    ``REELS_KAFKA_IDEMPOTENCE=1`` against Apache Kafka.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        idempotence: bool | None = None,
        request_timeout_ms: int = 10_000,
        client_id: str = "reels",
        max_batch_size: int = 16_384,
        linger_ms: int = 2,
    ) -> None:
        if idempotence is None:
            idempotence = platform().kafka_idempotence
        self.bootstrap = bootstrap or kafka_bootstrap()
        self.request_timeout_ms = request_timeout_ms
        self._options = dict(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=idempotence,
            request_timeout_ms=request_timeout_ms,
            linger_ms=linger_ms,
            # Bytes per partition batch: high-volume producers (player events) raise it
            # so a 500-event request is one produce round trip, not one per 16 KiB.
            max_batch_size=max_batch_size,
            client_id=client_id,
        )
        # Built by start(): an aiokafka client that exists but was never stopped logs
        # "Unclosed AIOKafkaProducer" when collected, so none exists before a start.
        self._client: AIOKafkaProducer | None = None
        self._started = False

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            raise KafkaError("EventProducer is not started")
        return self._client

    async def start(self) -> None:
        """Connect (fails fast with KafkaConnectionError when no broker answers).

        A failed start closes the aiokafka client again, so nothing is left unclosed.
        """
        if self._client is None:
            self._client = AIOKafkaProducer(**self._options)
        try:
            await self._client.start()
        except BaseException:
            failed, self._client = self._client, None
            with contextlib.suppress(Exception):
                await failed.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        client, self._client = self._client, None
        if client is not None:
            self._started = False
            await client.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send(
        self,
        topic: str | Topic,
        key: bytes | str | None,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> RecordMetadata:
        """Publish one record and return once the broker acknowledged it."""
        return await asyncio.wait_for(
            self._producer.send_and_wait(
                str(topic), payload, key=_key_bytes(key), headers=to_kafka_headers(headers)
            ),
            self._deadline(),
        )

    async def send_many(self, events: Sequence[OutgoingEvent]) -> list[RecordMetadata | Exception]:
        """Publish records in order, pipelined; one result (metadata or error) per record.

        aiokafka keeps one request in flight per partition, so records of one key
        reach the log in the order given here. One deadline covers enqueueing and one
        covers the acknowledgements (not one timer per record: a 500-record set would
        otherwise spend more time on timers than on Kafka).
        """
        futures: list[asyncio.Future[RecordMetadata]] = []
        failure: Exception | None = None
        send = self._producer.send
        try:
            async with asyncio.timeout(self._deadline()):
                for event in events:
                    futures.append(
                        await send(
                            event.topic,
                            event.payload,
                            key=_key_bytes(event.key),
                            headers=to_kafka_headers(event.headers),
                        )
                    )
        except (KafkaError, TimeoutError) as exc:
            failure = exc  # later records would overtake the failed one: stop here
        if futures:
            await asyncio.wait(futures, timeout=self._deadline())
        results: list[RecordMetadata | Exception] = []
        for fut in futures:
            if not fut.done():
                fut.cancel()
                results.append(TimeoutError("no acknowledgement before the deadline"))
            elif fut.cancelled():
                results.append(TimeoutError("send cancelled"))
            elif (exc := fut.exception()) is not None:
                if not isinstance(exc, KafkaError | TimeoutError):
                    raise exc
                results.append(exc)
            else:
                results.append(fut.result())
        if failure is not None:
            results.append(failure)
        return results

    async def send_batched(
        self, events: Sequence[OutgoingEvent]
    ) -> list[RecordMetadata | Exception]:
        """Like ``send_many`` (same results, same order per key), for large sets.

        Records are placed on the partition the default partitioner picks and written
        into one record batch per partition (a new one when a batch is full), so the
        producer handles a few batches instead of one future per record: a 500-record
        set costs a fraction of the CPU. If a batch cannot be queued, neither it nor
        any later batch is sent (their records report the error).
        """
        producer = self._producer
        results: list[RecordMetadata | Exception | None] = [None] * len(events)
        # (topic, partition, builder, indexes of its records), in the order filled.
        batches: list[tuple[str, int, Any, list[int]]] = []
        open_batches: dict[tuple[str, int], tuple[str, int, Any, list[int]]] = {}
        partitions: dict[str, list[int]] = {}
        placed: dict[tuple[str, bytes], int] = {}  # murmur2 is pure Python: once per key
        try:
            async with asyncio.timeout(self._deadline()):
                for index, event in enumerate(events):
                    key = _key_bytes(event.key)
                    all_partitions = partitions.get(event.topic)
                    if all_partitions is None:
                        all_partitions = list(await producer.partitions_for(event.topic))
                        partitions[event.topic] = all_partitions
                    if key is None:
                        partition = random.choice(all_partitions)
                    else:
                        partition = placed.get((event.topic, key), -1)
                        if partition < 0:
                            partition = _PARTITIONER(key, all_partitions, all_partitions)
                            placed[(event.topic, key)] = partition
                    headers = to_kafka_headers(event.headers)
                    current = open_batches.get((event.topic, partition))
                    if (
                        current is None
                        or current[2].append(
                            timestamp=None, key=key, value=event.payload, headers=headers
                        )
                        is None
                    ):
                        current = (event.topic, partition, producer.create_batch(), [])
                        open_batches[(event.topic, partition)] = current
                        batches.append(current)
                        if (
                            current[2].append(
                                timestamp=None, key=key, value=event.payload, headers=headers
                            )
                            is None
                        ):
                            raise KafkaError(f"record {index} is larger than a batch")
                    current[3].append(index)
        except (KafkaError, TimeoutError) as exc:
            for index in range(len(events)):
                results[index] = exc
            return results  # type: ignore[return-value] - every slot is set
        futures: list[tuple[asyncio.Future[RecordMetadata], list[int]]] = []
        failure: Exception | None = None
        try:
            async with asyncio.timeout(self._deadline()):
                for topic, partition, builder, indexes in batches:
                    futures.append(
                        (
                            await producer.send_batch(builder, topic, partition=partition),
                            indexes,
                        )
                    )
        except (KafkaError, TimeoutError) as exc:
            failure = exc  # later batches would overtake this one: stop here
        pending = [fut for fut, _ in futures]
        if pending:
            await asyncio.wait(pending, timeout=self._deadline())
        for fut, indexes in futures:
            outcome: RecordMetadata | Exception
            if not fut.done():
                fut.cancel()
                outcome = TimeoutError("no acknowledgement before the deadline")
            elif fut.cancelled():
                outcome = TimeoutError("send cancelled")
            elif (exc := fut.exception()) is not None:
                if not isinstance(exc, KafkaError | TimeoutError):
                    raise exc
                outcome = exc
            else:
                base = fut.result()
                for i, index in enumerate(indexes):
                    results[index] = base._replace(offset=base.offset + i)
                continue
            for index in indexes:
                results[index] = outcome
        for index, result in enumerate(results):
            if result is None:
                results[index] = failure or KafkaError("record was not sent")
        return results  # type: ignore[return-value] - every slot is set

    def _deadline(self) -> float:
        # A little beyond aiokafka's own request timeout, so its error wins when it has one.
        return self.request_timeout_ms / 1000 + 5


# --------------------------------------------------------------------------- consumer


@dataclass(frozen=True)
class ReceivedEvent:
    """A record as handlers see it: ids and headers decoded, payload still bytes."""

    event_id: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def trace_context(self) -> otel_context.Context:
        return extract_trace_context(self.headers)


def event_id_of(record: ConsumerRecord) -> tuple[str, dict[str, str]]:
    """The record's event id and decoded headers.

    A record without ``event-id`` (a producer outside our contract) gets a content
    hash as its id, so redeliveries of it are still recognised as duplicates.
    """
    headers = from_kafka_headers(record.headers)
    event_id = headers.get(EVENT_ID_HEADER)
    if not event_id:
        digest = hashlib.sha256()
        for part in (record.topic.encode(), record.key or b"", record.value or b""):
            digest.update(len(part).to_bytes(8, "big") + part)
        event_id = f"sha256:{digest.hexdigest()}"
        log.warning(
            "record %s/%d@%d has no event-id header; using %s",
            record.topic,
            record.partition,
            record.offset,
            event_id,
        )
    return event_id, headers


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.owner.assigned.clear()
        for tp in revoked:
            self.owner._committed.pop(tp, None)  # noqa: SLF001 - our own helper

    def on_partitions_assigned(self, assigned: object) -> None:
        self.owner.generation += 1
        self.owner.assigned.set()
        self.owner._readiness(True, "")  # noqa: SLF001 - our own helper


Handler = Callable[[ReceivedEvent], Awaitable[None]]


class EventConsumer:
    """A consumer group member that hands each record to ``handler``, in partition order.

    Offsets are committed only after the handler returned; when it raises, the
    partition is rewound to that record and retried after a capped exponential
    backoff (the record is redelivered, nothing after it overtakes it). When
    offset commits keep failing (a restarted memory-only broker has forgotten the
    group), the underlying client is recreated and rejoins the group.
    """

    def __init__(
        self,
        topics: Sequence[str | Topic],
        group_id: str,
        handler: Handler | None = None,
        *,
        bootstrap: str | None = None,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        max_records: int = 200,
        retry_backoff_max: float = 5.0,
        commit_timeout: float = 5.0,
        max_commit_failures: int = 3,
        metadata_max_age_ms: int = 3000,
    ) -> None:
        self.topics = [str(t) for t in topics]
        self.group_id = group_id
        self.handler = handler
        self.bootstrap = bootstrap or kafka_bootstrap()
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_records = max_records
        self.retry_backoff_max = retry_backoff_max
        self.commit_timeout = commit_timeout
        self.max_commit_failures = max_commit_failures
        self.metadata_max_age_ms = metadata_max_age_ms
        self.assigned = asyncio.Event()
        """Set while the group has given this member its partitions."""
        # The supervised loop this consumer runs in (reels.supervise), captured at
        # start(): rebalance callbacks run in aiokafka's own tasks.
        self._loop_handle: LoopHandle | None = None
        self.generation = 0
        """Incremented on every assignment: tests and health checks watch it."""
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._commit_failures = 0
        self._handler_failures = 0
        self._committed: dict[TopicPartition, int] = {}

    def _new_client(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Notice new partitions within seconds, not aiokafka's default 5 minutes: a
            # restarted Tansu may auto-create our topics with a different partition count.
            metadata_max_age_ms=self.metadata_max_age_ms,
            client_id=f"reels-{self.group_id}",
        )

    async def start(self) -> None:
        """Connect and subscribe; partitions arrive once the group join completes."""
        self._loop_handle = self._loop_handle or current_loop()
        consumer = self._new_client()
        try:
            await consumer.start()
            consumer.subscribe(self.topics, listener=_Rebalance(self))
        except BaseException:
            # Close the half-started client: otherwise each failed (re)connect leaves
            # an "Unclosed AIOKafkaConsumer" behind.
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the group (the next member takes over without waiting for a timeout)."""
        self._stopping.set()
        consumer, self._consumer = self._consumer, None
        self.assigned.clear()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def wait_assigned(self) -> None:
        """Block until partitions are assigned (a join takes ~half the session timeout).

        Wrap in ``asyncio.timeout`` to bound the wait.
        """
        await self.assigned.wait()

    async def run(self) -> None:
        """Consume until ``stop()`` (or cancellation)."""
        if self._consumer is None:
            await self._reconnect()
        while not self._stopping.is_set():
            consumer = self._consumer
            if consumer is None:
                break
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
            except KafkaError as exc:
                log.warning("consumer %s: fetch failed: %s", self.group_id, exc)
                self._readiness(False, f"Kafka fetch failed: {exc}")
                await self._sleep(1.0)
                continue
            rewound = await self._check_group_offsets(consumer, batches)
            for tp, records in batches.items():
                if self._stopping.is_set():
                    break
                if tp not in rewound:
                    await self._consume_partition(consumer, tp, records)

    async def _check_group_offsets(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> set[TopicPartition]:
        """Partitions whose batch must not be handled because the broker lost our offsets.

        A memory-only broker that restarted starts every log again at offset 0 and
        forgets committed offsets, but this client keeps fetching from its old
        position and would skip whatever the new log holds below it. If the group's
        committed offset is gone (or went backwards), rewind to it (or to the
        beginning) instead; idempotent handlers skip what they already applied.
        """
        skip: set[TopicPartition] = set()
        checks = [
            (tp, records, ours)
            for tp, records in batches.items()
            if records and (ours := self._committed.get(tp)) is not None
        ]
        if not checks:
            return skip
        # One round trip for all partitions of the batch, not one after the other.
        answers = await asyncio.gather(
            *(asyncio.wait_for(consumer.committed(tp), self.commit_timeout) for tp, _, _ in checks),
            return_exceptions=True,
        )
        for (tp, records, ours), theirs in zip(checks, answers, strict=True):
            if isinstance(theirs, BaseException):
                # Cannot verify: fetch this batch again.
                log.warning(
                    "consumer %s: cannot read committed offset of %s: %r", self.group_id, tp, theirs
                )
                with contextlib.suppress(Exception):
                    consumer.seek(tp, records[0].offset)
                skip.add(tp)
                continue
            if theirs is not None and theirs >= ours:
                continue
            log.warning(
                "consumer %s: broker lost the committed offset of %s (had %d, now %s); "
                "re-reading from %s",
                self.group_id,
                tp,
                ours,
                theirs,
                theirs or 0,
            )
            self._committed.pop(tp, None)
            with contextlib.suppress(Exception):
                if theirs is None:
                    await asyncio.wait_for(consumer.seek_to_beginning(tp), self.commit_timeout)
                else:
                    consumer.seek(tp, theirs)
            skip.add(tp)
        return skip

    async def _consume_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        done: int | None = None
        for record in records:
            try:
                await self._dispatch(record)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._handler_failures += 1
                delay = min(self.retry_backoff_max, 0.1 * 2 ** min(self._handler_failures, 10))
                log.exception(
                    "consumer %s: handler failed on %s/%d@%d; retrying in %.1fs",
                    self.group_id,
                    record.topic,
                    record.partition,
                    record.offset,
                    delay,
                )
                with contextlib.suppress(Exception):
                    consumer.seek(tp, record.offset)
                await self._sleep(delay * (0.5 + random.random() / 2))
                break
            self._handler_failures = 0
            done = record.offset + 1
        if done is not None:
            await self._commit(consumer, tp, done)

    async def _dispatch(self, record: ConsumerRecord) -> None:
        event_id, headers = event_id_of(record)
        event = ReceivedEvent(
            event_id=event_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers=headers,
        )
        with tracer.start_as_current_span(
            f"{record.topic} process",
            context=event.trace_context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.message.id": event_id,
                "messaging.kafka.offset": record.offset,
            },
        ):
            await self.handle(event)

    async def handle(self, event: ReceivedEvent) -> None:
        """Run the handler; subclasses wrap it (see ``IdempotentConsumer``)."""
        if self.handler is None:
            raise NotImplementedError("EventConsumer needs a handler or a handle() override")
        await self.handler(event)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        await self._commit_offsets(consumer, {tp: offset})

    async def _commit_offsets(
        self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Commit the offsets of several partitions in one request."""
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit(dict(offsets)), self.commit_timeout)
            self._committed.update(offsets)
            self._commit_failures = 0
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any commit failure is survivable
            self._commit_failures += 1
            log.warning(
                "consumer %s: commit of %s failed (%d in a row): %r",
                self.group_id,
                dict(offsets),
                self._commit_failures,
                exc,
            )
        if self._commit_failures >= self.max_commit_failures and not self._stopping.is_set():
            await self._reconnect()

    async def _reconnect(self) -> None:
        """(Re)create the client: a restarted broker may no longer know our member or topics."""
        old, self._consumer = self._consumer, None
        self.assigned.clear()
        if old is not None:
            log.warning("consumer %s: recreating the Kafka client", self.group_id)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), self.commit_timeout)
        self._commit_failures = 0
        while not self._stopping.is_set():
            try:
                await self.start()
                return
            except KafkaError as exc:
                log.warning("consumer %s: reconnect failed: %s", self.group_id, exc)
                self._readiness(False, f"Kafka unreachable: {exc}")
                await self._sleep(1.0)

    def _readiness(self, ready: bool, reason: str) -> None:
        """Tell the supervised loop running this consumer (if any) whether it works."""
        handle = self._loop_handle
        if handle is None:
            return
        if ready:
            handle.ready()
        else:
            handle.not_ready(reason)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


SessionHandler = Callable[[AsyncSession, ReceivedEvent], Awaitable[None]]


class IdempotentConsumer(EventConsumer):
    """Applies each event id at most once per group, atomically with its effects.

    For every record one transaction inserts ``(group, event_id)`` into
    ``processed_events``; if the row already exists the record is a redelivery and
    is skipped, otherwise the handler runs on the same session and everything
    commits together. A handler error rolls back both, so the record is retried.
    """

    def __init__(
        self,
        topics: Sequence[str | Topic],
        group_id: str,
        handler: SessionHandler,
        sessionmaker: async_sessionmaker[AsyncSession],
        **kwargs: object,
    ) -> None:
        super().__init__(topics, group_id, None, **kwargs)  # type: ignore[arg-type]
        self.session_handler = handler
        self.sessionmaker = sessionmaker
        self.skipped = 0
        """Redeliveries recognised and skipped (observable for tests and metrics)."""

    async def handle(self, event: ReceivedEvent) -> None:
        async with self.sessionmaker() as session, session.begin():
            inserted = await session.scalar(
                text(
                    "INSERT INTO processed_events (consumer_group, event_id, topic) "
                    "VALUES (:group, :event_id, :topic) "
                    "ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {"group": self.group_id, "event_id": event.event_id, "topic": event.topic},
            )
            if inserted is None:
                self.skipped += 1
                log.debug(
                    "consumer %s: skipping already processed %s", self.group_id, event.event_id
                )
                return
            await self.session_handler(session, event)


def new_event_id() -> uuid.UUID:
    """A fresh event id (UUID4: unique without coordination between producers)."""
    return uuid.uuid4()
