"""svc_rank's catalog of published videos (``rank_videos``), filled from ``video.published``.

svc_rank never reads svc_upload's or svc_stream's tables: its idempotent consumer
(group ``svc_rank.index.catalog``) keeps what ranking and a feed item need — creator,
title, duration, hashtags, publish time, the thumbnail and master keys — and the
video's embedding. The embedding is stored in Postgres (the source of truth) with
``vector_indexed = false``; the indexer loop (:mod:`svc_rank.index.vectors`) copies it
to Milvus and flips the flag, so a Milvus outage never blocks the catalog, and a lost
Milvus file is rebuilt from Postgres by clearing the flag.

Reads go through an in-process TTL cache (the hot path hydrates a few hundred videos
per request; ``REELS_RANK_CATALOG_CACHE_TTL_S``, 300 s, and ``_SIZE``, 100k entries of
~1.5 KB); a republish reaches other instances when their entry expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from reels.v1 import events_pb2
from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import IdempotentConsumer, ReceivedEvent
from reels.model_client import VISUAL_EMBEDDING_DIM
from svc_rank.models import RankVideo

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_rank.index.catalog"


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """A published video as the feed knows it. Immutable: cached and shared freely."""

    video_id: str
    creator_id: str
    title: str
    duration_s: float
    hashtags: tuple[str, ...]
    published_at: float
    """Epoch seconds."""
    thumbnail_key: str
    master_playlist_key: str
    embedding: np.ndarray | None = None
    """Unit float32 vector, or None when the video was published without one."""
    model_version: str = ""
    reupload_of: str = ""
    """The original (another creator's earlier video) this one is a visual
    near-duplicate of (:mod:`svc_rank.index.reuploads`); empty: an original."""


def unit(vector: Iterable[float]) -> np.ndarray | None:
    """``vector`` as a unit float32 array; None for an empty or zero vector."""
    arr = np.asarray(vector if isinstance(vector, list) else list(vector), dtype=np.float32)
    norm = float(np.linalg.norm(arr)) if arr.size else 0.0
    if not arr.size or not np.isfinite(norm) or norm == 0.0:
        return None
    return arr / norm


_INFO_COLUMNS = (
    RankVideo.video_id,
    RankVideo.creator_id,
    RankVideo.title,
    RankVideo.duration_s,
    RankVideo.hashtags,
    RankVideo.published_at,
    RankVideo.thumbnail_key,
    RankVideo.master_playlist_key,
    RankVideo.embedding,
    RankVideo.embedding_model_version,
    RankVideo.reupload_of,
)
"""What a VideoInfo needs, read as plain rows (no ORM identity map on the hot path)."""


def _info(row: Any) -> VideoInfo:
    return VideoInfo(
        video_id=row.video_id,
        creator_id=row.creator_id,
        title=row.title,
        duration_s=row.duration_s,
        hashtags=tuple(row.hashtags),
        published_at=row.published_at.timestamp(),
        thumbnail_key=row.thumbnail_key,
        master_playlist_key=row.master_playlist_key,
        embedding=unit(row.embedding) if row.embedding else None,
        model_version=row.embedding_model_version,
        reupload_of=row.reupload_of,
    )


class Catalog:
    """Published videos by id: Postgres behind an in-process TTL cache."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        embedding_dim: int = 256,
        ttl_s: float = 60.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.embedding_dim = embedding_dim
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, VideoInfo]] = {}
        self.active_consumer: IdempotentConsumer | None = None

    async def get_many(self, video_ids: Iterable[str]) -> dict[str, VideoInfo]:
        """The known videos among ``video_ids`` (unknown ones are simply absent)."""
        now = self._clock()
        out: dict[str, VideoInfo] = {}
        missing: list[str] = []
        for vid in dict.fromkeys(video_ids):
            hit = self._cache.get(vid)
            if hit is not None and hit[0] > now:
                out[vid] = hit[1]
            else:
                missing.append(vid)
        if missing:
            async with self.sessionmaker() as session:
                rows = await session.execute(
                    select(*_INFO_COLUMNS).where(RankVideo.video_id.in_(missing))
                )
                for row in rows:
                    info = _info(row)
                    out[info.video_id] = info
                    self._remember(info)
        return out

    async def get(self, video_id: str) -> VideoInfo | None:
        return (await self.get_many([video_id])).get(video_id)

    def _remember(self, info: VideoInfo) -> None:
        if len(self._cache) >= self.max_entries:
            # Drop the oldest insertions (dicts keep insertion order).
            for key in list(self._cache)[: max(1, self.max_entries // 10)]:
                del self._cache[key]
        self._cache[info.video_id] = (self._clock() + self.ttl_s, info)

    def forget(self, video_id: str) -> None:
        self._cache.pop(video_id, None)

    # ------------------------------------------------------------------ the consumer

    def row_values(self, event: events_pb2.VideoPublished) -> dict[str, Any]:
        """The ``rank_videos`` row a ``video.published`` event describes."""
        published_at = (
            event.published_at.ToDatetime(tzinfo=UTC)
            if event.HasField("published_at")
            else datetime.now(UTC)
        )
        embedding = unit(event.video_embedding)
        visual = unit(event.visual_embedding)
        if visual is not None and visual.shape[0] != VISUAL_EMBEDDING_DIM:
            log.warning(
                "catalog: %s has a %d-d visual vector, not %d-d; no re-upload check",
                event.video_id,
                visual.shape[0],
                VISUAL_EMBEDDING_DIM,
            )
            visual = None
        if embedding is not None and embedding.shape[0] != self.embedding_dim:
            log.warning(
                "catalog: %s has a %d-d embedding, the index holds %d-d; not indexed",
                event.video_id,
                embedding.shape[0],
                self.embedding_dim,
            )
            embedding = None
        return {
            "video_id": event.video_id,
            "creator_id": event.creator_id,
            "title": event.title,
            "duration_s": event.duration.ToNanoseconds() / 1e9,
            "hashtags": list(event.hashtags),
            "published_at": published_at,
            "thumbnail_key": event.thumbnail_key,
            "master_playlist_key": event.master_playlist_key,
            "embedding": None if embedding is None else [float(x) for x in embedding],
            "embedding_model_version": event.embedding_model_version,
            "vector_indexed": False,
            "visual_embedding": None if visual is None else [float(x) for x in visual],
            "visual_checked": False,
        }

    async def apply_published(
        self, session: AsyncSession, event: events_pb2.VideoPublished
    ) -> None:
        """Upsert the video (a republish replaces it and queues its vector again).

        A republish *without* a vector (svc_transcode's first event when embedding was
        pending, or a replay of it after the follow-up) never clears a stored one: the
        embedding, its version and its indexed flag are kept unless the event brings a
        new vector. The visual vector likewise (a new one queues a new re-upload check).
        """
        values = self.row_values(event)
        stmt = insert(RankVideo).values(**values)
        table = RankVideo.__table__.c
        has_new = stmt.excluded.embedding.is_not(None)
        keep = {
            "embedding": func.coalesce(stmt.excluded.embedding, table.embedding),
            "embedding_model_version": case(
                (has_new, stmt.excluded.embedding_model_version),
                else_=table.embedding_model_version,
            ),
            "vector_indexed": case((has_new, False), else_=table.vector_indexed),
            # The same for the visual vector: a new one is checked for re-uploads again.
            "visual_embedding": func.coalesce(
                stmt.excluded.visual_embedding, table.visual_embedding
            ),
            "visual_checked": case(
                (stmt.excluded.visual_embedding.is_not(None), False),
                else_=table.visual_checked,
            ),
        }
        stmt = stmt.on_conflict_do_update(
            index_elements=[RankVideo.video_id],
            set_={
                **{k: stmt.excluded[k] for k in values if k != "video_id" and k not in keep},
                **keep,
                "updated_at": func.now(),
            },
        )
        await session.execute(stmt)
        self.forget(event.video_id)

    async def handle_event(self, session: AsyncSession, event: ReceivedEvent) -> None:
        """IdempotentConsumer handler: runs inside the transaction that records the id."""
        try:
            message = topics.VIDEO_PUBLISHED.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("catalog: undecodable video.published %s; skipped", event.event_id)
            return
        if not message.video_id or not message.master_playlist_key:
            log.error("catalog: video.published %s lacks video_id/master; skipped", event.event_id)
            return
        await self.apply_published(session, message)

    def consumer(self, **kwargs: Any) -> IdempotentConsumer:
        return IdempotentConsumer(
            [topics.VIDEO_PUBLISHED], CONSUMER_GROUP, self.handle_event, self.sessionmaker, **kwargs
        )
