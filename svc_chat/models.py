"""svc_chat's tables (migration branch "chat"): live streams.

svc_chat is the only writer (one owner per store); other services learn of streams
from ``streams.events`` or ask ChatService. Chat itself (messages, history,
moderation) lives in Redis, not here.

Schema changes go through Alembic migrations (svc_chat/migrations); these classes must
match the migrated schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


class LiveStream(Base):
    """One live stream, from CreateStream to its end (svc_chat.streams.lifecycle).

    ``state`` is the name of a ``svc_chat.streams.lifecycle.State`` ("CREATED", "LIVE",
    "ENDED"). ``stream_key_hash`` is the SHA-256 hex of the stream key (the key itself
    is never stored; svc_chat.streams.keys). The viewer counts are frozen here when
    the stream ends; while it is live they are in Redis (svc_chat.streams.viewers).
    """

    __tablename__ = "live_streams"
    __table_args__ = (
        CheckConstraint("state IN ('CREATED', 'LIVE', 'ENDED')", name="state"),
        Index("ix_live_streams_state_created_at", "state", "created_at"),
        Index("ix_live_streams_creator_id_created_at", "creator_id", "created_at"),
        Index("ix_live_streams_stream_key_hash", "stream_key_hash", unique=True),
    )

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    creator_id: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'CREATED'"))
    stream_key_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    peak_viewer_count: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    unique_viewer_count: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    recording_video_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The video this stream's recording became (svc_chat.ingest.recording); NULL
    until the recording is handed to the VOD pipeline."""
