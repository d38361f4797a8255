"""svc_upload's tables: videos and uploads.

svc_upload is their only writer; its migrations are the "upload" branch.

Schema changes go through Alembic migrations; these classes must match the migrated
schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


class VideoStatus(StrEnum):
    """Lifecycle a creator sees: uploading -> processing -> published | failed |
    in_review (held by NSFW moderation) -> published | failed (a moderator's call)."""

    UPLOADING = "uploading"
    PROCESSING = "processing"
    PUBLISHED = "published"
    FAILED = "failed"
    DELETED = "deleted"
    IN_REVIEW = "in_review"


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


class ScanJob(Base):
    """An upload held until the malware scanner answers (svc_upload.scan, u0003).

    ``event`` is the serialized ``video.uploaded`` payload (reels.v1.VideoUploaded)
    that only a clean scan releases to the outbox; the row goes with that transaction.
    """

    __tablename__ = "scan_jobs"
    __table_args__ = (Index("ix_scan_jobs_next_attempt_at", "next_attempt_at"),)

    video_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    original_key: Mapped[str] = mapped_column(Text, nullable=False)
    event: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime] = _now()
    created_at: Mapped[datetime] = _now()


class VideoReview(Base):
    """A video the NSFW classifier held for a moderator (svc_upload.review, u0004).

    One row per held video: what the classifier found (score, model, thresholds, the
    top frames' object keys and scores) and, once decided, who decided what and why.
    Undecided rows, oldest first, are the review queue.
    """

    __tablename__ = "video_reviews"
    __table_args__ = (
        Index(
            "ix_video_reviews_queue",
            "held_at",
            "video_id",
            postgresql_where=text("decided_at IS NULL"),
        ),
    )

    video_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[float] = mapped_column(Float, nullable=False)
    model_name: Mapped[str] = mapped_column(Text, nullable=False)
    model_version: Mapped[str] = mapped_column(Text, nullable=False)
    review_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    reject_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    frames_scored: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # [{"key", "score", "time_seconds"}], highest score first.
    top_frames: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    held_at: Mapped[datetime] = _now()
    decision: Mapped[str | None] = mapped_column(Text, nullable=True)  # approve | reject
    decided_by: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
