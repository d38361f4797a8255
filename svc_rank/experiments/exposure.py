"""Exposure logging: one ``FeedExposure`` per (user, experiment, phase), when an arm SERVES.

An exposure is what makes a user part of an arm's analysis, so it is logged when the
arm's ranking actually served a feed page (GetFeed returned items ranked with the
arm's config), not when the user was merely assigned. Users who are assigned but
never served are not analysed in any arm (alike for every arm, so no bias).

Exactly one event per (experiment, phase, user) reaches the analysis, in three layers:

1. **Redis, hot path.** ``SET <prefix>exp:exposed:<experiment>:<phase>:<user>
   pending NX PX 30000`` claims the exposure. Only the claimant goes on; every later
   GetFeed of that user in the phase costs one Redis round trip and nothing else.
   After the outbox commit the key becomes ``done`` with a long TTL (default 7 days);
   if the write fails the key is deleted, and a crash in between leaves a ``pending``
   key that expires in 30 s, so a later page records the exposure after all.
2. **Postgres, the outbox.** The event id is a UUIDv5 of ``experiment:phase:user``
   (:func:`exposure_event_id`), and ``outbox.event_id`` is unique, so a second enqueue
   of the same exposure (Redis flushed or expired, a race after a crash) fails its
   savepoint and counts as a duplicate. The event commits in the same transaction as
   nothing else: the outbox gives at-least-once delivery to Kafka ``feed.exposures``
   even while the broker is down, and svc_rank's relay
   (``OutboxRelay(topics=topics.produced_by("svc_rank"))``) sends it.
3. **ClickHouse, forever.** ``feed_exposures`` is a ``ReplacingMergeTree`` ordered by
   ``(experiment_id, phase, user_id)`` (see :mod:`svc_rank.experiments.warehouse`),
   so a replayed or re-sent exposure is the same row; the earliest exposure wins.

Without Redis the recorder still works (Postgres alone de-duplicates, one insert
attempt per page; after a Redis error Redis is skipped for ``redis_retry_s``, so an
outage costs one timeout, not one per page); without Postgres the exposure is not
recorded (FAILED) and the claim is released, so the next page tries again. Recording
never raises into the feed.

What ranked the page: ``ranker_model_version`` carries the scorer that actually served
the exposing page, as GetFeed's ``scorer`` says it (``"ranker:<version Triton
answered with>"`` or ``"rules"`` after a fallback; svc_rank/scorer/learned.py reads the
version from Triton's response), not the version the arm pins: an arm that keeps the
service's ranker ("" pin) is served whatever version is loaded, and a pinned version
that is being unloaded or down is served by rules. The arm's pin stays in the
experiment's config under ``arm``. A caller that does not say what served (``served``
empty) gets the arm's pin label as before (``"2"``, ``"rules"`` or "").

Pure parts (no I/O): :func:`dedup_key`, :func:`exposure_event_id`,
:func:`build_exposure`. The recorder is the one I/O part.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis.asyncio as aioredis
from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import cache, topics
from reels.outbox import enqueue_message
from reels.topics import Topic
from svc_rank.experiments.assignment import bucket
from svc_rank.experiments.model import Arm, Experiment

log = logging.getLogger(__name__)

PRODUCER = "svc_rank"
EXPOSURE_NAMESPACE = uuid.UUID("5f1c8a4e-2b7d-4c39-9e0a-6d3f1b2c7a85")
"""UUIDv5 namespace of exposure event ids (fixed forever: changing it re-keys them)."""

DONE_TTL_S = 7 * 86400
PENDING_TTL_S = 30.0
REDIS_RETRY_S = 5.0
"""After a Redis error the recorder skips Redis this long (Postgres de-duplicates)."""


def _feed_exposures_topic() -> Topic:
    for t in topics.REGISTRY.values():
        if t.message is events_pb2.FeedExposure and not t.dead_letter_producer:
            return t
    raise LookupError("FeedExposure has no (reels.v1.topic) option in events.proto")


FEED_EXPOSURES: Topic = _feed_exposures_topic()
"""The ``feed.exposures`` topic (from events.proto's option on FeedExposure)."""


def dedup_key(experiment_id: str, phase: int, unit: str) -> str:
    """The Redis key that marks ``unit`` as exposed in this phase (prefixed)."""
    return cache.key("exp", "exposed", experiment_id, phase, unit)


def exposure_event_id(experiment_id: str, phase: int, unit: str) -> uuid.UUID:
    """The exposure's event id: UUIDv5(EXPOSURE_NAMESPACE, "experiment:phase:unit")."""
    return uuid.uuid5(EXPOSURE_NAMESPACE, f"{experiment_id}:{phase}:{unit}")


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    return ts


def build_exposure(
    experiment: Experiment,
    arm: Arm,
    unit: str,
    *,
    served_at: datetime,
    request_id: str = "",
    served: str = "",
) -> events_pb2.FeedExposure:
    """The ``FeedExposure`` event for ``unit`` served by ``arm`` (pure; checks the arm).

    ``served``: what ranked the page, GetFeed's ``scorer`` (``"ranker:2"``, ``"rules"``);
    it becomes ``ranker_model_version``; "" falls back to the arm's pin label."""
    if experiment.arm(arm.name) != arm:
        raise ValueError(f"arm {arm.name!r} is not this phase's arm")
    event_id = exposure_event_id(experiment.experiment_id, experiment.phase, unit)
    ts = _timestamp(served_at)
    return events_pb2.FeedExposure(
        meta=events_pb2.EventMeta(event_id=str(event_id), occurred_at=ts, producer=PRODUCER),
        experiment_id=experiment.experiment_id,
        phase=experiment.phase,
        salt=experiment.salt,
        arm=arm.name,
        user_id=unit,
        bucket=bucket(experiment.salt, unit),
        ranker_model_version=served or arm.config.ranker_label,
        request_id=request_id,
        exposed_at=ts,
    )


class Outcome(enum.Enum):
    RECORDED = "recorded"
    """This call wrote the exposure to the outbox."""
    DUPLICATE = "duplicate"
    """Already recorded (or being recorded) in this phase: nothing written."""
    FAILED = "failed"
    """Could not write (database down); the claim was released so a later page retries."""


class ExposureRecorder:
    """Records exposures: Redis claim, outbox enqueue, never raising into the feed.

    ``redis``: None runs on Postgres de-duplication alone. ``clock``: for tests.
    Counters ``recorded``, ``duplicates``, ``failures`` are for metrics.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis | None,
        *,
        done_ttl_s: float = DONE_TTL_S,
        pending_ttl_s: float = PENDING_TTL_S,
        redis_retry_s: float = REDIS_RETRY_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.done_ttl_ms = int(done_ttl_s * 1000)
        self.pending_ttl_ms = int(pending_ttl_s * 1000)
        self.clock = clock
        self.redis_retry_s = redis_retry_s
        self._redis_down_until = 0.0
        self.recorded = 0
        self.duplicates = 0
        self.failures = 0
        self._tasks: set[asyncio.Task[Outcome]] = set()

    async def record(
        self,
        experiment: Experiment,
        arm: Arm,
        user_id: str,
        *,
        request_id: str = "",
        served: str = "",
    ) -> Outcome:
        """Record that ``arm`` of ``experiment`` served ``user_id`` a feed (idempotent);
        ``served``: the scorer that ranked the page (:func:`build_exposure`)."""
        key = dedup_key(experiment.experiment_id, experiment.phase, user_id)
        claimed = await self._claim(key)
        if claimed is False:
            self.duplicates += 1
            return Outcome.DUPLICATE
        event = build_exposure(
            experiment,
            arm,
            user_id,
            served_at=self.clock(),
            request_id=request_id,
            served=served,
        )
        try:
            outcome = await self._enqueue(event)
        except Exception as exc:  # noqa: BLE001 - exposure logging never fails a feed
            log.warning("exposure %s not recorded: %s", event.meta.event_id, exc)
            self.failures += 1
            if claimed:
                await self._redis_quietly("DEL", key)
            return Outcome.FAILED
        await self._redis_quietly("SET", key, b"done", px=self.done_ttl_ms)
        if outcome is Outcome.RECORDED:
            self.recorded += 1
        else:
            self.duplicates += 1
        return outcome

    def record_soon(
        self,
        experiment: Experiment,
        arm: Arm,
        user_id: str,
        *,
        request_id: str = "",
        served: str = "",
    ) -> asyncio.Task[Outcome]:
        """:meth:`record` in the background (GetFeed does not wait); returns the task."""
        task = asyncio.create_task(
            self.record(experiment, arm, user_id, request_id=request_id, served=served),
            name=f"exposure:{experiment.experiment_id}:{user_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for the background recordings (call at shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _claim(self, key: str) -> bool | None:
        """True: claimed; False: already claimed or done; None: Redis unavailable."""
        if not self._redis_usable():
            return None
        assert self.redis is not None
        try:
            got = await self.redis.set(key, b"pending", nx=True, px=self.pending_ttl_ms)
        except Exception as exc:  # noqa: BLE001 - fall back to Postgres de-duplication
            self._redis_failed()
            log.warning("exposure claim in Redis failed (%s); de-duplicating in Postgres", exc)
            return None
        return bool(got)

    def _redis_usable(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self) -> None:
        self._redis_down_until = time.monotonic() + self.redis_retry_s

    async def _enqueue(self, event: events_pb2.FeedExposure) -> Outcome:
        async with self.sessionmaker() as session, session.begin():
            try:
                async with session.begin_nested():
                    await enqueue_message(session, FEED_EXPOSURES, event, event.meta.event_id)
            except IntegrityError:
                return Outcome.DUPLICATE  # outbox.event_id is unique: already enqueued
        return Outcome.RECORDED

    async def _redis_quietly(self, op: str, key: str, *args: object, **kwargs: object) -> None:
        if not self._redis_usable():
            return
        assert self.redis is not None
        try:
            if op == "DEL":
                await self.redis.delete(key)
            else:
                await self.redis.set(key, *args, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the key only saves work; TTLs clean up
            self._redis_failed()
            log.debug("exposure key %s: %s failed: %s", key, op, exc)
