"""svc_upload's branch: videos held for review by NSFW moderation (video_reviews).

Revision ID: u0004
Revises: u0003
Create Date: 2026-12-01 01:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "u0004"
down_revision: str | Sequence[str] | None = "u0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "video_reviews",
        sa.Column(
            "video_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("review_threshold", sa.Float(), nullable=False),
        sa.Column("reject_threshold", sa.Float(), nullable=False),
        sa.Column("frames_scored", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "top_frames",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "held_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_video_reviews_queue",
        "video_reviews",
        ["held_at", "video_id"],
        postgresql_where=sa.text("decided_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_video_reviews_queue", table_name="video_reviews")
    op.drop_table("video_reviews")
