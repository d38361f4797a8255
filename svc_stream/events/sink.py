"""The analytics sink: Kafka topics -> ClickHouse tables and Redis counters, in batches.

One consumer group (``svc_stream.analytics``) reads ``video.event-batches``
(RecordEvents' records, up to 500 player events each), ``video.events`` (one event
per record, as older svc_streams wrote them), ``engagement.events``,
``video.published`` and ``feed.exposures`` (svc_rank's experiment exposures ->
``feed_exposures``, svc_rank/experiments/warehouse.py) and
applies what it read as one batch: up to ``max_batch`` events or ``linger_s`` after
the first one, whichever comes first, because ClickHouse wants few large inserts.

Exactly-once *effects* on an at-least-once log, without a per-event ledger in
Postgres (which would cap throughput at the database's insert rate):

* ClickHouse tables are ``ReplacingMergeTree`` whose sorting key ends in the event id
  (``watch_history``, ``videos`` and ``video_embeddings``: the natural key), so a
  replayed row is the same row. Background merges collapse duplicates eventually;
  analytics queries read with ``FINAL`` so the numbers are exact at every moment, not
  only after a merge.
* Redis counters are guarded by a per-event ledger key inside one atomic Lua script
  (see ``counters.py``); the per-view-session state that tells a view from a replay
  is updated under the same ledger key, so views stay exact across batches, restarts
  and redeliveries.

View sessions: an event's ``session_id`` names its view session (with its user). An
older client that sends none gets a deterministic one here,
``legacy-<30-minute window of its established time>`` (:func:`effective_session`):
its events within one window are one view session, so a re-sent watch_start does not
make a second view; the same derived id is written to ClickHouse, so the analytics
and the counters agree, and a redelivery derives the same id again. The counters bound
each view session's watch time by its video's duration (counters.py), which the sink
takes from ``video.published`` (this batch's, or the ``videos`` table).

Offsets are committed only after both stores took the batch; a crash in between
(or a failure of either store) replays the batch, which both stores then ignore.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from reels.v1 import common_pb2, events_pb2

from reels import topics
from reels.analytics import Analytics
from reels.events import EVENT_COUNT_HEADER, EventConsumer, ReceivedEvent, event_id_of
from reels.exposures import EXPOSURE_COLUMNS, EXPOSURES_DDL, exposure_row
from reels.topics import Topic
from reels.view_sessions import effective_session
from svc_stream.events.counters import (
    WATCH_COMPLETE_KIND,
    WATCH_START_KIND,
    CounterDelta,
    Counters,
    WatchDelta,
    creator_counters_key,
    video_counters_key,
)

log = logging.getLogger(__name__)

SINK_TOPICS = (
    topics.VIDEO_EVENT_BATCHES,
    topics.VIDEO_EVENTS,
    topics.ENGAGEMENT_EVENTS,
    topics.VIDEO_PUBLISHED,
    topics.FEED_EXPOSURES,
)
_VIDEO_EVENTS = topics.VIDEO_EVENTS.name
_VIDEO_EVENT_BATCHES = topics.VIDEO_EVENT_BATCHES.name
_ENGAGEMENT = topics.ENGAGEMENT_EVENTS.name
_PUBLISHED = topics.VIDEO_PUBLISHED.name
_EXPOSURES = topics.FEED_EXPOSURES.name
SINK_GROUP = "svc_stream.analytics"

ET = common_pb2.EventType
GT = events_pb2.EngagementType
WATCH_TYPES = frozenset(
    {
        ET.EVENT_TYPE_WATCH_START,
        ET.EVENT_TYPE_PROGRESS_25,
        ET.EVENT_TYPE_PROGRESS_50,
        ET.EVENT_TYPE_PROGRESS_75,
        ET.EVENT_TYPE_WATCH_COMPLETE,
    }
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS video_events (
        event_id String, video_id String, user_id String, session_id String,
        client_event_id String, type UInt8,
        occurred_at DateTime64(3, 'UTC'), received_at DateTime64(3, 'UTC'),
        position_s Float64, watch_s Float64,
        rendition LowCardinality(String), device LowCardinality(String),
        country LowCardinality(String)
    ) ENGINE = ReplacingMergeTree ORDER BY (video_id, event_id)""",
    """CREATE TABLE IF NOT EXISTS watch_history (
        user_id String, video_id String, session_id String,
        position_s Float64, completed UInt8, last_event_at DateTime64(3, 'UTC'),
        version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (user_id, video_id, session_id)""",
    """CREATE TABLE IF NOT EXISTS engagement_events (
        event_id String, type UInt8, user_id String, video_id String, creator_id String,
        comment_id String, channel LowCardinality(String), occurred_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY (video_id, event_id)""",
    """CREATE TABLE IF NOT EXISTS videos (
        video_id String, creator_id String, duration_s Float64, title String,
        published_at DateTime64(3, 'UTC'), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY video_id""",
    # One row per (video, embedding space version): the 256-d unit video vector of a
    # video.published that carries one (reels/embedding_space.py). created = when the
    # vector was made (the event's occurred_at); a replay is the same row.
    """CREATE TABLE IF NOT EXISTS video_embeddings (
        video_id String, model_version LowCardinality(String),
        embedding Array(Float32), created DateTime64(3, 'UTC'), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (video_id, model_version)""",
    # One row per (experiment, phase, user): the earliest exposure wins (the table's
    # contract is svc_rank/experiments/warehouse.py, which also reads it).
    EXPOSURES_DDL,
)
VIDEO_EVENT_COLUMNS = (
    "event_id",
    "video_id",
    "user_id",
    "session_id",
    "client_event_id",
    "type",
    "occurred_at",
    "received_at",
    "position_s",
    "watch_s",
    "rendition",
    "device",
    "country",
)
WATCH_HISTORY_COLUMNS = (
    "user_id",
    "video_id",
    "session_id",
    "position_s",
    "completed",
    "last_event_at",
    "version",
)
ENGAGEMENT_COLUMNS = (
    "event_id",
    "type",
    "user_id",
    "video_id",
    "creator_id",
    "comment_id",
    "channel",
    "occurred_at",
)
VIDEO_COLUMNS = ("video_id", "creator_id", "duration_s", "title", "published_at", "version")
VIDEO_EMBEDDING_COLUMNS = ("video_id", "model_version", "embedding", "created", "version")

# Plain ints: attribute access on a protobuf enum wrapper is a Python __getattr__ call.
_WATCH_START = int(ET.EVENT_TYPE_WATCH_START)
_WATCH_COMPLETE = int(ET.EVENT_TYPE_WATCH_COMPLETE)
_DEVICE_NAMES = {v: n.removeprefix("DEVICE_").lower() for n, v in common_pb2.Device.items()}


async def ensure_schema(analytics: Analytics) -> None:
    """Create the analytics tables if missing (idempotent; runs at every start)."""
    for ddl in SCHEMA:
        await analytics.command(ddl)


def device_name(device: int) -> str:
    return _DEVICE_NAMES.get(device, "unspecified")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# DateTime64(3)'s range in ClickHouse (1900-01-01 .. 2299-12-31 23:59:59.999), in ms.
_MIN_MS = -2_208_988_800_000
_MAX_MS = 10_413_791_999_999


def _ts(msg: Any) -> datetime:
    """``msg.ToDatetime(tzinfo=UTC)``, without its validation and time-zone round trip.

    Out-of-range values still raise (OverflowError, or ToDatetime's ValueError for
    invalid nanos), so a poison record is still skipped by ``Batch.add``.
    """
    nanos = msg.nanos
    if not 0 <= nanos < 1_000_000_000:
        return msg.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]
    return _EPOCH + timedelta(seconds=msg.seconds, microseconds=nanos // 1000)


def _ms(msg: Any) -> int:
    """A protobuf Timestamp as epoch milliseconds (DateTime64(3)'s ticks, what the
    column-oriented insert writes as is: no datetime object per event).

    Raises ValueError for invalid nanos or a time outside DateTime64's range, so a
    poison record is still skipped by ``Batch.add``.
    """
    nanos = msg.nanos
    if not 0 <= nanos < 1_000_000_000:
        raise ValueError(f"invalid Timestamp nanos {nanos}")
    ms = msg.seconds * 1000 + nanos // 1_000_000
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"timestamp {msg.seconds}s outside ClickHouse's DateTime64 range")
    return ms  # type: ignore[no-any-return]


class Batch:
    """Rows and counter deltas decoded from one consumed batch.

    ``video_event_columns`` holds ``video_events`` column-wise (one list per column of
    :data:`VIDEO_EVENT_COLUMNS`, times as epoch ms), which is how it is inserted: one
    column-oriented block per batch, no tuple or datetime per event.
    """

    def __init__(self) -> None:
        self.video_event_columns: tuple[list[Any], ...] = tuple([] for _ in VIDEO_EVENT_COLUMNS)
        self.engagement: list[tuple[Any, ...]] = []
        self.videos: list[tuple[Any, ...]] = []
        self.embeddings: list[tuple[Any, ...]] = []
        self.exposures: list[tuple[Any, ...]] = []
        self.deltas: list[CounterDelta] = []
        # (sort key, delta): applied in the order the events happened (see ``watch``).
        self._watch: list[tuple[tuple[Any, ...], WatchDelta]] = []
        # (user, video, session) -> watch_history row with the highest version.
        self.history: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    @property
    def video_events(self) -> list[tuple[Any, ...]]:
        """``video_events`` rows (tuples in VIDEO_EVENT_COLUMNS order, times in epoch ms)."""
        return list(zip(*self.video_event_columns, strict=True))

    @property
    def watch(self) -> list[WatchDelta]:
        """Watch deltas ordered as the analytics order a session's events: by established
        time, then position, then type (a start before a complete at the same instant)."""
        return [d for _, d in sorted(self._watch, key=lambda item: item[0])]

    def add(self, event: ReceivedEvent) -> None:
        try:
            if event.topic == _VIDEO_EVENT_BATCHES:
                self._video_event_batch(event)
            elif event.topic == _VIDEO_EVENTS:
                self._video_event(event)
            elif event.topic == _ENGAGEMENT:
                self._engagement(event)
            elif event.topic == _PUBLISHED:
                self._published(event)
            elif event.topic == _EXPOSURES:
                m = events_pb2.FeedExposure.FromString(event.value)
                if m.experiment_id and m.user_id:
                    self.exposures.append(exposure_row(event.event_id, m))
        except (DecodeError, ValueError, OverflowError) as exc:
            # A poison record must not wedge the partition: log it and move on.
            log.error(
                "analytics sink: skipping undecodable %s record %s: %s",
                event.topic,
                event.event_id,
                exc,
            )

    def _video_event_batch(self, event: ReceivedEvent) -> None:
        """A ``VideoEventBatch`` record: its items, decoded in bulk (one parse, one
        list per column); each item counted by its own ``meta.event_id``."""
        m = events_pb2.VideoEventBatch.FromString(event.value)
        items = list(m.events)
        ids = [e.meta.event_id for e in items]
        if not all(ids):  # a producer outside our contract: ids from the record's id
            ids = [i or f"{event.event_id}#{n}" for n, i in enumerate(ids)]
        self._video_events(items, ids, _ms(m.meta.occurred_at), event)

    def _video_event(self, event: ReceivedEvent) -> None:
        """A ``video.events`` record (one event; what svc_stream wrote before batches)."""
        m = events_pb2.VideoEvent.FromString(event.value)
        self._video_events([m], [event.event_id], _ms(m.meta.occurred_at), event)

    def _video_events(
        self, items: list[Any], ids: list[str], received_ms: int, event: ReceivedEvent
    ) -> None:
        """Append ``items`` (VideoEvent messages; ``ids[i]`` is item i's event id,
        ``received_ms`` their receive time) to the columns, watch history and deltas.

        Column by column (a list comprehension per field reads each protobuf field in
        a tight loop, far cheaper than a Python statement per field and event). An item
        whose time ClickHouse cannot store is skipped alone (logged), not its batch.
        """
        try:
            occurred = [_ms(e.occurred_at) for e in items]
        except (ValueError, OverflowError):
            keep = []
            for n, e in enumerate(items):
                try:
                    _ms(e.occurred_at)
                    keep.append(n)
                except (ValueError, OverflowError) as exc:
                    log.error(
                        "analytics sink: skipping event %s of %s record %s: %s",
                        ids[n],
                        event.topic,
                        event.event_id,
                        exc,
                    )
            items = [items[n] for n in keep]
            ids = [ids[n] for n in keep]
            occurred = [_ms(e.occurred_at) for e in items]
        if not items:
            return
        video_ids = [e.video_id for e in items]
        user_ids = [e.user_id for e in items]
        sessions = [
            s or effective_session(s, e.occurred_at)
            for s, e in zip([e.session_id for e in items], items, strict=True)
        ]
        kinds = [e.type for e in items]
        positions = [e.position_seconds for e in items]
        watched = [e.watch_seconds for e in items]
        names = _DEVICE_NAMES
        c = self.video_event_columns
        c[0].extend(ids)
        c[1].extend(video_ids)
        c[2].extend(user_ids)
        c[3].extend(sessions)
        c[4].extend([e.client_event_id for e in items])
        c[5].extend(kinds)
        c[6].extend(occurred)
        c[7].extend([received_ms] * len(items))
        c[8].extend(positions)
        c[9].extend(watched)
        c[10].extend([e.rendition for e in items])
        c[11].extend([names.get(e.device, "unspecified") for e in items])
        c[12].extend([e.country for e in items])
        history, watch = self.history, self._watch
        for n, kind_type in enumerate(kinds):
            if kind_type not in WATCH_TYPES:
                continue  # player-reported like/share/comment: telemetry only (engagement)
            user_id, video_id, session = user_ids[n], video_ids[n], sessions[n]
            position, occurred_ms = positions[n], occurred[n]
            completed = kind_type == _WATCH_COMPLETE
            version = (int(completed) << 40) | int(position * 1000)
            hkey = (user_id, video_id, session)
            old = history.get(hkey)
            if old is None or old[-1] < version:
                history[hkey] = (
                    user_id,
                    video_id,
                    session,
                    position,
                    int(completed),
                    occurred_ms,
                    version,
                )
            kind = (
                WATCH_START_KIND
                if kind_type == _WATCH_START
                else WATCH_COMPLETE_KIND
                if completed
                else 0
            )
            # Milliseconds, as ClickHouse stores the time, so both order ties alike.
            event_id = ids[n]
            delta = WatchDelta(
                event_id,
                video_id,
                user_id,
                session,
                kind,
                round(watched[n] * 1000),
                occurred_ms,
            )
            watch.append(((occurred_ms, position, kind_type, event_id), delta))

    def _engagement(self, event: ReceivedEvent) -> None:
        m = events_pb2.EngagementEvent.FromString(event.value)
        self.engagement.append(
            (
                event.event_id,
                m.type,
                m.user_id,
                m.video_id,
                m.creator_id,
                m.comment_id,
                m.channel,
                _ts(m.meta.occurred_at),
            )
        )
        video_field = {
            GT.ENGAGEMENT_TYPE_LIKE: ("likes", 1),
            GT.ENGAGEMENT_TYPE_UNLIKE: ("likes", -1),
            GT.ENGAGEMENT_TYPE_COMMENT: ("comments", 1),
            GT.ENGAGEMENT_TYPE_SHARE: ("shares", 1),
        }.get(m.type)
        if video_field is not None and m.video_id:
            self.deltas.append(
                CounterDelta(
                    event.event_id, video_counters_key(m.video_id), {video_field[0]: video_field[1]}
                )
            )
        elif m.type in (GT.ENGAGEMENT_TYPE_FOLLOW, GT.ENGAGEMENT_TYPE_UNFOLLOW) and m.creator_id:
            step = 1 if m.type == GT.ENGAGEMENT_TYPE_FOLLOW else -1
            self.deltas.append(
                CounterDelta(
                    event.event_id, creator_counters_key(m.creator_id), {"followers": step}
                )
            )

    def _published(self, event: ReceivedEvent) -> None:
        m = events_pb2.VideoPublished.FromString(event.value)
        if not m.video_id:
            return
        published = _ts(m.published_at) if m.HasField("published_at") else datetime.now(UTC)
        version = m.meta.occurred_at.ToNanoseconds() if m.HasField("meta") else 0
        self.videos.append(
            (
                m.video_id,
                m.creator_id,
                m.duration.ToNanoseconds() / 1e9,
                m.title,
                published,
                version or int(published.timestamp() * 1e9),
            )
        )
        if m.video_embedding:
            # A video first published without vectors gets them in a follow-up
            # video.published (svc_transcode/backfill.py); one without any adds no row.
            created = _ts(m.meta.occurred_at) if m.HasField("meta") else published
            self.embeddings.append(
                (
                    m.video_id,
                    m.embedding_model_version,
                    list(m.video_embedding),
                    created,
                    version or int(created.timestamp() * 1e9),
                )
            )


MAX_REMEMBERED_DURATIONS = 200_000


class AnalyticsSink:
    """Writes decoded batches to ClickHouse and Redis (both idempotent)."""

    def __init__(self, analytics: Analytics, counters: Counters) -> None:
        self.analytics = analytics
        self.counters = counters
        self.applied_batches = 0
        self.rows = 0
        # Video durations (s) that bound each view session's watch time in the counters
        # (counters.py): from video.published, as ClickHouse's ``videos`` has them.
        self._durations: dict[str, float] = {}

    async def durations(self, batch: Batch, video_ids: set[str]) -> dict[str, float]:
        """Durations of ``video_ids``: this batch's video.published first, then what
        earlier batches wrote to ``videos`` (one query for those not remembered yet).
        A video not known anywhere is left out (its watch time is not bounded)."""
        for row in batch.videos:
            self._durations[row[0]] = float(row[2])
        missing = [v for v in video_ids if v not in self._durations]
        if missing:
            rows = await self.analytics.query_rows(
                "SELECT video_id, argMax(duration_s, version) FROM videos"
                " WHERE video_id IN {ids:Array(String)} GROUP BY video_id",
                {"ids": missing},
            )
            if len(self._durations) > MAX_REMEMBERED_DURATIONS:
                self._durations.clear()
            for video_id, duration in rows:
                self._durations[str(video_id)] = float(duration)
        return {v: self._durations[v] for v in video_ids if v in self._durations}

    async def apply(self, events: Sequence[ReceivedEvent]) -> None:
        batch = Batch()
        for event in events:
            batch.add(event)
        # ClickHouse and Redis at the same time (chDB works on its own thread while the
        # Lua script runs): both are idempotent, so if either fails the whole batch is
        # replayed and ClickHouse's replacing tables and the Redis ledger absorb what
        # the other store already took.
        inserts = (
            ("videos", batch.videos, VIDEO_COLUMNS),
            ("video_embeddings", batch.embeddings, VIDEO_EMBEDDING_COLUMNS),
            ("engagement_events", batch.engagement, ENGAGEMENT_COLUMNS),
            ("feed_exposures", batch.exposures, EXPOSURE_COLUMNS),
        )
        # The high-volume tables go column-oriented (one block each, C-friendly lists).
        columnar = (
            ("video_events", batch.video_event_columns, VIDEO_EVENT_COLUMNS),
            ("watch_history", _transpose(batch.history.values(), 7), WATCH_HISTORY_COLUMNS),
        )

        async def clickhouse() -> None:
            for table, rows, columns in inserts:
                if rows:
                    await self.analytics.insert_rows(table, rows, columns)
            for table, data, columns in columnar:
                if data[0]:
                    await insert_columns(self.analytics, table, data, columns)

        jobs = [clickhouse()]
        if batch.deltas:
            jobs.append(self.counters.apply(batch.deltas))
        watch = batch.watch
        if watch:
            durations = await self.durations(batch, {d.video_id for d in watch})
            jobs.append(self.counters.apply_watch(watch, durations))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.applied_batches += 1
        self.rows += len(batch.video_event_columns[0])


def _transpose(rows: Any, width: int) -> tuple[list[Any], ...]:
    """Rows (tuples of ``width``) as ``width`` column lists (empty lists for no rows)."""
    columns = tuple(map(list, zip(*rows, strict=True)))
    return columns or tuple([] for _ in range(width))


async def insert_columns(
    analytics: Analytics,
    table: str,
    columns: Sequence[Sequence[Any]],
    column_names: Sequence[str],
) -> None:
    """Insert one block given column-wise (``columns[i]`` holds ``column_names[i]``):
    :meth:`reels.analytics.Analytics.insert_columns`."""
    await analytics.insert_columns(table, columns, column_names)


BatchHandler = Callable[[Sequence[ReceivedEvent]], Awaitable[None]]
_EVENT_COUNT = EVENT_COUNT_HEADER


def record_events(record: ConsumerRecord) -> int:
    """How many events ``record`` holds: its ``event-count`` header (batch records,
    ``video.event-batches``), else 1. A malformed header counts as 1."""
    for key, value in record.headers or ():
        if key == _EVENT_COUNT:
            try:
                return max(1, int(value))
            except (TypeError, ValueError):
                return 1
    return 1


class BatchConsumer(EventConsumer):
    """A consumer group member that hands records to ``apply`` in batches.

    Reuses EventConsumer's group handling (rejoin and rewind after a broker restart,
    commit-failure reconnects); only the loop differs: records of all assigned
    partitions are gathered for up to ``linger_s`` (or ``max_batch`` events: a record
    with an ``event-count`` header counts as that many, see :func:`record_events`),
    applied
    in one call, and only then committed. A failed apply rewinds every partition of
    the batch and retries after a capped backoff.
    """

    def __init__(
        self,
        topics: Sequence[str | Topic],
        group_id: str,
        apply: BatchHandler,
        *,
        max_batch: int = 5000,
        linger_s: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(topics, group_id, None, max_records=max_batch, **kwargs)
        self.apply = apply
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.failures = 0
        self._per_record = 1.0  # moving average of events per record fetched

    async def run(self) -> None:
        if self._consumer is None:
            await self._reconnect()
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            consumer = self._consumer
            if consumer is None:
                break
            pending: dict[TopicPartition, list[ConsumerRecord]] = {}
            count = 0
            deadline: float | None = None
            try:
                while count < self.max_batch and not self._stopping.is_set():
                    wait = 0.5 if deadline is None else deadline - loop.time()
                    if wait <= 0:
                        break
                    # Records to ask for: what is left of the batch in events, over
                    # the events a record has held lately (1 for single-event topics,
                    # ~500 for video.event-batches), so a batch stays near max_batch.
                    ask = max(1, math.ceil((self.max_batch - count) / self._per_record))
                    fetched = await consumer.getmany(
                        timeout_ms=max(1, int(wait * 1000)), max_records=ask
                    )
                    if not fetched:
                        if deadline is None:
                            break  # idle: go round (lets stop() and reconnects act)
                        continue
                    for tp, records in fetched.items():
                        if records:
                            pending.setdefault(tp, []).extend(records)
                            weight = sum(map(record_events, records))
                            count += weight
                            self._per_record += 0.2 * (weight / len(records) - self._per_record)
                    if deadline is None and count:
                        deadline = loop.time() + self.linger_s
                # Once per batch, before anything of it is applied: a broker that lost
                # our committed offsets (memory-only restart) makes us re-read instead.
                for tp in await self._check_group_offsets(consumer, pending):
                    pending.pop(tp, None)
            except KafkaError as exc:
                log.warning("consumer %s: fetch failed: %s", self.group_id, exc)
                self._rewind(consumer, pending)
                await self._sleep(1.0)
                continue
            if not pending:
                continue
            events = []
            for records in pending.values():
                for record in records:
                    event_id, headers = event_id_of(record)
                    events.append(
                        ReceivedEvent(
                            event_id,
                            record.topic,
                            record.partition,
                            record.offset,
                            record.key,
                            record.value or b"",
                            headers,
                        )
                    )
            try:
                await self.apply(events)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                delay = min(self.retry_backoff_max, 0.1 * 2 ** min(self.failures, 10))
                log.exception(
                    "consumer %s: batch of %d failed; retrying in %.1fs",
                    self.group_id,
                    len(events),
                    delay,
                )
                self._rewind(consumer, pending)
                await self._sleep(delay)
                continue
            self.failures = 0
            await self._commit_offsets(
                consumer, {tp: records[-1].offset + 1 for tp, records in pending.items()}
            )

    @staticmethod
    def _rewind(consumer: Any, pending: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in pending.items():
            try:
                consumer.seek(tp, records[0].offset)
            except Exception as exc:  # noqa: BLE001 - partition may be gone after a rebalance
                log.debug("rewind of %s failed: %s", tp, exc)
