"""Tables of the metadata database.

Schema changes go through Alembic migrations in ``reels/db/migrations/versions``;
these classes must match the migrated schema (a test compares them).
One owner per store: ``videos`` and ``uploads`` are written only by svc_upload
(svc_transcode reports progress through it or through events it owns).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose metadata Alembic migrates."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Outbox(Base):
    """Events written in the same transaction as the state change they announce.

    A relay publishes unsent rows in id order and stamps ``sent_at``; the broker can
    lose data (Tansu is memory-only) without the platform losing an event.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's hot path: the oldest unsent rows, found without scanning sent ones.
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProcessedEvent(Base):
    """Event ids a consumer group has already applied: the idempotency ledger.

    Kafka delivers at least once (and a memory-only broker replays from the start
    after a restart), so each handler's effects commit together with this row.
    """

    __tablename__ = "processed_events"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str | None] = mapped_column(Text, nullable=True)
    processed_at: Mapped[datetime] = _now()


class VideoStatus(StrEnum):
    """Lifecycle a creator sees: uploading -> processing -> published | failed."""

    UPLOADING = "uploading"
    PROCESSING = "processing"
    PUBLISHED = "published"
    FAILED = "failed"
    DELETED = "deleted"


class Video(Base):
    """A reel: its metadata, where processing stands, and the probed media facts."""

    __tablename__ = "videos"
    __table_args__ = (
        Index("ix_videos_creator_id_created_at", "creator_id", "created_at"),
        Index("ix_videos_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    hashtags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    content_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    audio_attribution: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(
        Text, nullable=False, server_default=text(f"'{VideoStatus.UPLOADING.value}'")
    )
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    stage: Mapped[str | None] = mapped_column(Text, nullable=True)
    percent: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(Text, nullable=True)
    original_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # u0002: what the client sent and what transcoding produced.
    filename: Mapped[str | None] = mapped_column(Text, nullable=True)
    mime_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Rendition messages as JSON (reels.v1.Rendition, json_format names): the ladder
    # is read whole and never queried by field, so one column keeps it in one row.
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    master_playlist_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    thumbnail_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    preview_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    storyboard_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Upload(Base):
    """A resumable upload session; ``received_bytes`` is the offset a client resumes at.

    ``sha256_state`` is unused: Python's hashlib cannot export a running hash, so
    after a restart svc_upload rehashes the staged file once instead (u0002).
    """

    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_expires_at", "expires_at"),
        Index("ix_uploads_video_id", "video_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    video_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("videos.id", ondelete="CASCADE"), nullable=False
    )
    creator_id: Mapped[str] = mapped_column(Text, nullable=False)
    declared_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received_bytes: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    sha256_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'open'"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # u0002: the client's declared sha256 (checked on complete) and file facts.
    expected_sha256: Mapped[str | None] = mapped_column(Text, nullable=True)
    filename: Mapped[str | None] = mapped_column(Text, nullable=True)
    mime_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class TranscodeJob(Base):
    """One transcode job per video, owned by svc_transcode: the work queue itself.

    Postgres is the queue (not Kafka) because a job needs what a log cannot give:
    a lease that expires when a worker dies, a retry time in the future, and state
    an operator can read and change (retry, cancel). ``video_id`` is unique so a
    redelivered ``video.uploaded`` never makes a second job; RetryJob reuses the row.
    ``payload`` keeps the original event bytes for the dead-letter topic.
    """

    __tablename__ = "transcode_jobs"
    __table_args__ = (
        # The claim query: due queued jobs, and running jobs whose lease ran out.
        Index("ix_transcode_jobs_state_next_attempt_at", "state", "next_attempt_at"),
        # ListJobs: newest first, keyset-paginated on (created_at, id).
        Index("ix_transcode_jobs_created_at_id", "created_at", "id"),
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead_lettered', 'cancelled')",
            name="state",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # Text, not UUID: the id comes from an event, and a malformed one must not wedge the consumer.
    video_id: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    source_event_id: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'queued'"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("3"))
    next_attempt_at: Mapped[datetime] = _now()
    lease_owner: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    stage: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'queued'"))
    percent: Mapped[float] = mapped_column(Float, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    permanent: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    original_key: Mapped[str] = mapped_column(Text, nullable=False)
    creator_id: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StreamVideo(Base):
    """svc_stream's catalog of published videos: what playback needs, from video.published.

    Owned by svc_stream (branch "stream", s0002); filled only by its idempotent
    consumer, never from svc_upload's ``videos`` table. ``renditions`` holds
    reels.v1.Rendition messages as JSON (read whole, never queried by field).
    """

    __tablename__ = "stream_videos"

    video_id: Mapped[str] = mapped_column(Text, primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    master_playlist_key: Mapped[str] = mapped_column(Text, nullable=False)
    thumbnail_key: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    preview_key: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    storyboard_key: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    hashtags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    title: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = _now()


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
