"""Catalog of published videos, owned by svc_stream: what playback needs to know.

Source of truth is the ``stream_videos`` table (svc_stream's own, migration branch
"stream"), filled from ``video.published`` by an idempotent consumer (group
``svc_stream.playback.catalog``). svc_stream never reads svc_upload's ``videos`` table: one
owner per store, and the event carries everything playback needs.

Reads go through an in-process cache because GetPlayback/GetManifest sit on the
start-up path of every view (goal p99 < 5 ms inside the service): a hit is a dict
lookup. Positive entries live ``positive_ttl_s`` (other instances of svc_stream do
not see this instance's consumer, so a republish reaches them when their entry
expires); misses are remembered only ``negative_ttl_s`` so a video becomes playable
on every instance within about a second of its event being applied.

Deleted videos: nothing is consumed for that yet (there is no ``video.deleted``
topic in the contracts). When one exists, its handler deletes the row and calls
:meth:`Catalog.forget`; until then a deleted video stays playable until its media
is removed from the store (the origin then answers 404).

Other svc_stream modules (events, engagement, analytics) use :meth:`Catalog.get`
to validate video ids and read durations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from reels.v1 import common_pb2, events_pb2
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import IdempotentConsumer, ReceivedEvent
from svc_stream.playback.models import StreamVideo

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_stream.playback.catalog"
DEFAULT_POSITIVE_TTL_S = 60.0
DEFAULT_NEGATIVE_TTL_S = 1.0
DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class CatalogRendition:
    """One HLS variant of a published video (keys relative to the object store)."""

    name: str
    width: int
    height: int
    bandwidth_bps: int
    average_bandwidth_bps: int
    codecs: str
    frame_rate: float
    playlist_key: str

    def to_proto(self, playlist_url: str = "") -> common_pb2.Rendition:
        return common_pb2.Rendition(
            name=self.name,
            width=self.width,
            height=self.height,
            bandwidth_bps=self.bandwidth_bps,
            average_bandwidth_bps=self.average_bandwidth_bps,
            codecs=self.codecs,
            frame_rate=self.frame_rate,
            playlist_key=self.playlist_key,
            playlist_url=playlist_url,
        )

    @property
    def short_side(self) -> int:
        """The "p" of the rung whatever the orientation (a 720x1280 portrait rung is 720p)."""
        return min(self.width, self.height)


@dataclass(frozen=True, slots=True)
class MediaKeys:
    """Object-store keys of a video's media besides the variant playlists."""

    master_playlist: str
    thumbnail: str
    preview: str
    storyboard: str


@dataclass(frozen=True, slots=True)
class PublishedVideo:
    """A playable video as svc_stream knows it. Immutable: cached and shared freely."""

    video_id: str
    creator_id: str
    duration_s: float
    width: int
    height: int
    renditions: tuple[CatalogRendition, ...]
    """Lowest rung first."""
    keys: MediaKeys
    hashtags: tuple[str, ...]
    published_at: datetime
    title: str = ""


# --------------------------------------------------------------------------- conversions


def _rendition_from_proto(r: common_pb2.Rendition) -> CatalogRendition:
    return CatalogRendition(
        name=r.name,
        width=r.width,
        height=r.height,
        bandwidth_bps=r.bandwidth_bps,
        average_bandwidth_bps=r.average_bandwidth_bps,
        codecs=r.codecs,
        frame_rate=r.frame_rate,
        playlist_key=r.playlist_key,
    )


def _sorted(renditions: list[CatalogRendition]) -> tuple[CatalogRendition, ...]:
    return tuple(sorted(renditions, key=lambda r: (r.short_side, r.bandwidth_bps)))


def video_from_event(event: events_pb2.VideoPublished) -> PublishedVideo:
    """The catalog entry a ``video.published`` event describes."""
    published_at = (
        event.published_at.ToDatetime(tzinfo=UTC)
        if event.HasField("published_at")
        else datetime.now(UTC)
    )
    return PublishedVideo(
        video_id=event.video_id,
        creator_id=event.creator_id,
        duration_s=event.duration.ToNanoseconds() / 1e9,
        width=event.width,
        height=event.height,
        renditions=_sorted([_rendition_from_proto(r) for r in event.renditions]),
        keys=MediaKeys(
            master_playlist=event.master_playlist_key,
            thumbnail=event.thumbnail_key,
            preview=event.preview_key,
            storyboard=event.storyboard_key,
        ),
        hashtags=tuple(event.hashtags),
        published_at=published_at,
        title=event.title,
    )


def _video_from_row(row: StreamVideo) -> PublishedVideo:
    renditions = [
        _rendition_from_proto(json_format.ParseDict(d, common_pb2.Rendition()))
        for d in row.renditions
    ]
    return PublishedVideo(
        video_id=row.video_id,
        creator_id=row.creator_id,
        duration_s=row.duration_s,
        width=row.width,
        height=row.height,
        renditions=_sorted(renditions),
        keys=MediaKeys(
            master_playlist=row.master_playlist_key,
            thumbnail=row.thumbnail_key,
            preview=row.preview_key,
            storyboard=row.storyboard_key,
        ),
        hashtags=tuple(row.hashtags),
        published_at=row.published_at,
        title=row.title,
    )


def _row_values(video: PublishedVideo) -> dict[str, Any]:
    return {
        "video_id": video.video_id,
        "creator_id": video.creator_id,
        "duration_s": video.duration_s,
        "width": video.width,
        "height": video.height,
        "renditions": [
            json_format.MessageToDict(r.to_proto(), preserving_proto_field_name=True)
            for r in video.renditions
        ],
        "master_playlist_key": video.keys.master_playlist,
        "thumbnail_key": video.keys.thumbnail,
        "preview_key": video.keys.preview,
        "storyboard_key": video.keys.storyboard,
        "hashtags": list(video.hashtags),
        "title": video.title,
        "published_at": video.published_at,
    }


# --------------------------------------------------------------------------- catalog


class Catalog:
    """Published videos by id: Postgres behind an in-process TTL cache."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        positive_ttl_s: float = DEFAULT_POSITIVE_TTL_S,
        negative_ttl_s: float = DEFAULT_NEGATIVE_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.positive_ttl_s = positive_ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, PublishedVideo | None]] = {}
        # One database read per id at a time: a burst of first views of a new video
        # (a push notification) must not become a burst of identical queries.
        self._inflight: dict[str, asyncio.Future[PublishedVideo | None]] = {}
        self.active_consumer: IdempotentConsumer | None = None
        """The running consumer once start() joined the group (tests wait on it)."""

    async def get(self, video_id: str) -> PublishedVideo | None:
        """The published video, or None when the catalog does not know it (yet)."""
        hit = self._cache.get(video_id)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        pending = self._inflight.get(video_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[PublishedVideo | None] = asyncio.get_running_loop().create_future()
        self._inflight[video_id] = fut
        try:
            video = await self._load(video_id)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            self._inflight.pop(video_id, None)
        fut.set_result(video)
        self._remember(video_id, video)
        return video

    async def _load(self, video_id: str) -> PublishedVideo | None:
        async with self.sessionmaker() as session:
            row = await session.scalar(select(StreamVideo).where(StreamVideo.video_id == video_id))
            return None if row is None else _video_from_row(row)

    def _remember(self, video_id: str, video: PublishedVideo | None) -> None:
        if len(self._cache) >= self.max_entries:
            self._evict()
        ttl = self.positive_ttl_s if video is not None else self.negative_ttl_s
        self._cache[video_id] = (self._clock() + ttl, video)

    def _evict(self) -> None:
        now = self._clock()
        expired = [k for k, (deadline, _) in self._cache.items() if deadline <= now]
        for key in expired:
            del self._cache[key]
        # Still full: drop the oldest insertions (dicts keep insertion order).
        overflow = len(self._cache) - self.max_entries + 1
        for key in list(self._cache)[: max(0, overflow)]:
            del self._cache[key]

    def forget(self, video_id: str) -> None:
        """Drop the cached entry so the next get() reads the database."""
        self._cache.pop(video_id, None)

    async def apply_published(
        self, event: events_pb2.VideoPublished, session: AsyncSession | None = None
    ) -> PublishedVideo:
        """Upsert the video a ``video.published`` event describes (a republish replaces it).

        With ``session`` (the consumer's transaction) the cache is updated only once
        that transaction commits, so a rolled-back event never becomes visible here.
        """
        video = video_from_event(event)
        values = _row_values(video)
        stmt = insert(StreamVideo).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StreamVideo.video_id],
            set_={
                **{k: stmt.excluded[k] for k in values if k != "video_id"},
                "updated_at": func.now(),
            },
        )
        if session is None:
            async with self.sessionmaker() as own, own.begin():
                await own.execute(stmt)
            self._remember(video.video_id, video)
            return video
        await session.execute(stmt)
        sa_event.listen(
            session.sync_session,
            "after_commit",
            lambda _s: self._remember(video.video_id, video),
            once=True,
        )
        return video

    async def handle_event(self, session: AsyncSession, event: ReceivedEvent) -> None:
        """IdempotentConsumer handler: runs inside the transaction that records the id."""
        try:
            message = topics.VIDEO_PUBLISHED.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("catalog: undecodable video.published %s; skipped", event.event_id)
            return
        if not message.video_id or not message.master_playlist_key:
            log.error(
                "catalog: video.published %s lacks video_id/master key; skipped", event.event_id
            )
            return
        await self.apply_published(message, session)

    def consumer(self, **kwargs: Any) -> IdempotentConsumer:
        """The consumer group that keeps this catalog filled (start/run/stop it)."""
        return IdempotentConsumer(
            [topics.VIDEO_PUBLISHED], CONSUMER_GROUP, self.handle_event, self.sessionmaker, **kwargs
        )
