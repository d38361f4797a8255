"""svc_transcode's table: the transcode job queue (migration branch "transcode").

Schema changes go through Alembic migrations; these classes must match the migrated
schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


class TranscodeJob(Base):
    """One transcode job per video, owned by svc_transcode: the work queue itself.

    Postgres is the queue (not Kafka) because a job needs what a log cannot give:
    a lease that expires when a worker dies, a retry time in the future, and state
    an operator can read and change (retry, cancel). ``video_id`` is unique so a
    redelivered ``video.uploaded`` never makes a second job; RetryJob reuses the row.
    ``payload`` keeps the original event bytes for the dead-letter topic.

    A ``succeeded`` job with ``stage = 'embeddings_pending'`` published its video
    without vectors (Triton was unavailable); the backfill fills them in later
    (svc_transcode/backfill.py) and sets the stage to ``done``.
    """

    __tablename__ = "transcode_jobs"
    __table_args__ = (
        # The claim query: due queued jobs, and running jobs whose lease ran out.
        Index("ix_transcode_jobs_state_next_attempt_at", "state", "next_attempt_at"),
        # ListJobs: newest first, keyset-paginated on (created_at, id).
        Index("ix_transcode_jobs_created_at_id", "created_at", "id"),
        # The embeddings backfill: published jobs whose vectors are still to come (t0004).
        Index(
            "ix_transcode_jobs_embeddings_due",
            "next_attempt_at",
            postgresql_where=text("stage = 'embeddings_pending'"),
        ),
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
    # t0003: W3C trace context (traceparent/tracestate) every attempt's span continues.
    trace_context: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    # t0004: embeddings still to compute after publishing (stage 'embeddings_pending'):
    # backfill attempts so far, the sampled frames (svc_transcode.frames.pack_frames)
    # and the video.published sent without vectors; both bytes are cleared once done.
    embedding_attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("0")
    )
    # Deferred: up to a few MB, read only by the backfill (GetJob/ListJobs never load them).
    pending_frames: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    pending_event: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
