"""svc_rank's tables (migration branch "rank"): its own catalog and the followee graph.

svc_rank never reads another service's tables (one owner per store): everything here
comes from ``video.published`` and ``engagement.events`` through its idempotent
consumers. Postgres is the source of truth; Milvus is an index rebuilt from
``rank_videos.embedding`` (``vector_indexed`` tracks what Milvus already holds), and
Redis holds only what can be lost (user vectors, affinities, served history).

Schema changes go through Alembic migrations (svc_rank/migrations); these classes must
match the migrated schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, REAL
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


class RankVideo(Base):
    """A published video as the feed knows it (what ranking and a feed item need).

    ``sample_key`` is a uniform random number fixed at insert: exploration samples
    the catalog with ``sample_key >= random() ORDER BY sample_key`` on its index,
    which costs one index range scan instead of ``ORDER BY random()`` over every row.
    """

    __tablename__ = "rank_videos"
    __table_args__ = (
        Index("ix_rank_videos_creator_id_published_at", "creator_id", "published_at"),
        Index("ix_rank_videos_published_at", "published_at"),
        Index("ix_rank_videos_sample_key", "sample_key"),
        Index(
            "ix_rank_videos_unindexed",
            "video_id",
            postgresql_where=text("embedding IS NOT NULL AND NOT vector_indexed"),
        ),
        Index(
            "ix_rank_videos_visual_unchecked",
            "published_at",
            postgresql_where=text("visual_embedding IS NOT NULL AND NOT visual_checked"),
        ),
    )

    video_id: Mapped[str] = mapped_column(Text, primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    hashtags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    thumbnail_key: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    master_playlist_key: Mapped[str] = mapped_column(Text, nullable=False)
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL), nullable=True)
    embedding_model_version: Mapped[str] = mapped_column(
        Text, nullable=False, server_default=text("''")
    )
    vector_indexed: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    sample_key: Mapped[float] = mapped_column(
        Float, nullable=False, server_default=text("random()")
    )
    updated_at: Mapped[datetime] = _now()
    # Re-upload detection (migration r0003, :mod:`svc_rank.index.reuploads`). The
    # 1280-d visual vector is deferred: the feed's hot path never loads it.
    visual_embedding: Mapped[list[float] | None] = mapped_column(
        ARRAY(REAL), nullable=True, deferred=True
    )
    visual_checked: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    reupload_of: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    """The earliest published video of another creator this one is a visual
    near-duplicate of; empty: an original (or not checked yet)."""


class RankFollow(Base):
    """``user_id`` follows ``creator_id`` (from FOLLOW/UNFOLLOW engagement events)."""

    __tablename__ = "rank_follows"
    __table_args__ = (Index("ix_rank_follows_creator_id", "creator_id"),)

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = _now()
