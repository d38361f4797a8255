"""svc_stream's branch: the catalog of published videos (``stream_videos``).

Its own branch off 0001 (``branch_labels=("stream",)``) because each service owns
its tables and migrations; ``upgrade heads`` applies every branch.

Revision ID: s0002
Revises: 0001
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "s0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("stream",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_videos",
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column(
            "renditions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("master_playlist_key", sa.Text(), nullable=False),
        sa.Column("thumbnail_key", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("preview_key", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("storyboard_key", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "hashtags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("title", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_stream_videos")),
    )


def downgrade() -> None:
    op.drop_table("stream_videos")
