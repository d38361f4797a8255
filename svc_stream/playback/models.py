"""svc_stream's catalog of published videos (migration branch "stream").

Schema changes go through Alembic migrations; these classes must match the migrated
schema (tests/integration/test_outbox.py compares them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reels.db.models import Base
from reels.db.models import now_column as _now


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
