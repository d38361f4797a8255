"""svc_stream's engagement tables: likes, comments, shares, follows (migration branch "engagement").

Schema changes go through Alembic migrations; these classes must match the migrated
schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


class VideoLike(Base):
    """One row per (video, user) who likes it: the primary key makes a like idempotent.

    Owned by svc_stream (branch "engagement", e0002). Unlike deletes the row, so the
    like count is always ``count(*)`` of what users currently like.
    """

    __tablename__ = "video_likes"
    __table_args__ = (Index("ix_video_likes_user_id", "user_id"),)

    video_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = _now()


class VideoComment(Base):
    """A comment; ``(user_id, client_comment_id)`` is unique so a retried post is one comment.

    ListComments pages newest first on ``(video_id, created_at, id)`` (keyset cursor).
    """

    __tablename__ = "video_comments"
    __table_args__ = (
        Index("ix_video_comments_video_id_created_at_id", "video_id", "created_at", "id"),
        Index(
            "uq_video_comments_user_id_client_comment_id",
            "user_id",
            "client_comment_id",
            unique=True,
            postgresql_where=text("client_comment_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    video_id: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    client_comment_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _now()


class VideoShare(Base):
    """Every share is its own row (sharing twice is two shares), with the channel used."""

    __tablename__ = "video_shares"
    __table_args__ = (Index("ix_video_shares_video_id", "video_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    video_id: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()


class CreatorFollow(Base):
    """Who follows whom; the primary key makes follow idempotent, unfollow deletes."""

    __tablename__ = "creator_follows"
    __table_args__ = (
        Index("ix_creator_follows_creator_id", "creator_id"),
        CheckConstraint("follower_id <> creator_id", name="no_self_follow"),
    )

    follower_id: Mapped[str] = mapped_column(Text, primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = _now()
