"""Which live streams are on air: svc_stream's view of ``streams.events``, for playback.

svc_chat owns streams (lifecycle, ingest) and writes the live HLS ladder under
``live/{stream_id}/`` in the object store; svc_stream only needs to know, per stream id,
whether it is LIVE or ENDED and whose it is, to answer GetPlayback with the signed live
master URL. It learns that from ``stream.started`` / ``stream.ended``
(``StreamLifecycleEvent``) through an idempotent consumer (group
``svc_stream.playback.live``), like the catalog learns videos from ``video.published``.
It never asks svc_chat's tables (one owner per store).

State lives in Redis (``<prefix>stream:live:<stream_id>``, a hash), not Postgres: every
svc_stream instance must see a start within a second (an in-process cache would hide
it for its TTL), the state is small and short-lived, and a lost entry only costs the
viewers of that stream their GetPlayback until the next event (the consumer's group
offsets and ``processed_events`` rows stay in Postgres, as for every consumer).

Ordering: states only move forward (CREATED < LIVE < ENDED, the enum's order), applied
by one Lua step, so a redelivered or reordered ``stream.started`` arriving after
``stream.ended`` never brings a stream back on air. Entries expire ``ttl_s`` after their
last event (default 7 days): an ENDED stream is forgotten then (GetPlayback answers
NOT_FOUND, as for an unknown id), and a LIVE one whose ``stream.ended`` was never
delivered does not stay "live" forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from reels.v1 import common_pb2, events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.cache import key
from reels.events import IdempotentConsumer, ReceivedEvent

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_stream.playback.live"
DEFAULT_TTL_S = 7 * 86400
LIVE_ROOT = "live"
MASTER_NAME = "master.m3u8"

S = common_pb2.LiveStreamState
# States this view records (CREATED is svc_chat's business: nothing to play yet).
TRACKED = {S.LIVE_STREAM_STATE_LIVE, S.LIVE_STREAM_STATE_ENDED}

# KEYS[1] = the stream's hash; ARGV = rank, creator_id, title, started_at, ended_at, ttl.
# Applies the event unless the stored state is later (states only move forward).
_APPLY = """
local current = tonumber(redis.call('HGET', KEYS[1], 'state') or '0')
local new = tonumber(ARGV[1])
if new < current then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'creator_id', ARGV[2], 'title', ARGV[3],
  'started_at', ARGV[4], 'ended_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""


def master_key(stream_id: str) -> str:
    """Object key of a live stream's HLS master (svc_chat's ingest writes it there)."""
    return f"{LIVE_ROOT}/{stream_id}/{MASTER_NAME}"


def is_live_key(key: str) -> bool:
    """Whether an object key belongs to a live ladder (the origin caches those differently)."""
    return key.startswith(f"{LIVE_ROOT}/")


@dataclass(frozen=True, slots=True)
class LiveStream:
    """A stream as playback knows it."""

    stream_id: str
    creator_id: str
    state: int
    """A ``LiveStreamState`` value (LIVE or ENDED)."""
    title: str = ""
    started_at: float = 0.0
    """Unix seconds; 0 when unknown."""
    ended_at: float = 0.0

    @property
    def is_live(self) -> bool:
        return self.state == S.LIVE_STREAM_STATE_LIVE

    @property
    def master_key(self) -> str:
        return master_key(self.stream_id)


def _seconds(event: events_pb2.StreamLifecycleEvent, field: str) -> float:
    if not event.HasField(field):
        return 0.0
    return getattr(event, field).ToNanoseconds() / 1e9


class LiveStreams:
    """Live stream state in Redis, kept by a ``streams.events`` consumer."""

    def __init__(
        self,
        redis: aioredis.Redis,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self.redis = redis
        self.sessionmaker = sessionmaker
        self.ttl_s = ttl_s
        self._apply = redis.register_script(_APPLY)
        self.active_consumer: IdempotentConsumer | None = None
        """The running consumer once the app's loop joined the group (tests wait on it)."""

    @staticmethod
    def _key(stream_id: str) -> str:
        return key("stream", "live", stream_id)

    async def get(self, stream_id: str) -> LiveStream | None:
        """The stream, or None when no start or end of it has been seen (or it expired)."""
        raw: dict[bytes | str, bytes | str] = await self.redis.hgetall(self._key(stream_id))
        if not raw:
            return None
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return LiveStream(
            stream_id=stream_id,
            creator_id=fields.get("creator_id", ""),
            state=int(fields.get("state", "0")),
            title=fields.get("title", ""),
            started_at=float(fields.get("started_at", "0") or 0),
            ended_at=float(fields.get("ended_at", "0") or 0),
        )

    async def apply(self, event: events_pb2.StreamLifecycleEvent) -> bool:
        """Record the state the event announces; False when it is stale or not tracked."""
        if event.state not in TRACKED or not event.stream_id:
            return False
        applied = await self._apply(
            keys=[self._key(event.stream_id)],
            args=[
                int(event.state),
                event.creator_id,
                event.title,
                repr(_seconds(event, "started_at")),
                repr(_seconds(event, "ended_at")),
                self.ttl_s,
            ],
        )
        return bool(applied)

    async def handle_event(self, session: AsyncSession, event: ReceivedEvent) -> None:
        """IdempotentConsumer handler. The Redis step is idempotent and forward-only, so
        a rollback after it (the event is then redelivered) changes nothing."""
        try:
            message = topics.STREAMS_EVENTS.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("live: undecodable streams.events record %s; skipped", event.event_id)
            return
        if not await self.apply(message):
            log.debug(
                "live: %s for %s not applied (stale or untracked)",
                event.event_id,
                message.stream_id,
            )

    def consumer(self, **kwargs: Any) -> IdempotentConsumer:
        """The consumer group that keeps this view current (start/run/stop it)."""
        return IdempotentConsumer(
            [topics.STREAMS_EVENTS], CONSUMER_GROUP, self.handle_event, self.sessionmaker, **kwargs
        )
