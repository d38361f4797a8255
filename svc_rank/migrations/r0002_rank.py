"""svc_rank's branch: its catalog of published videos and the followee graph.

Its own branch off 0001 (``branch_labels=("rank",)``) because each service owns its
tables and migrations; ``upgrade heads`` applies every branch.

Revision ID: r0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "r0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("rank",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rank_videos",
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column(
            "hashtags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("thumbnail_key", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("master_playlist_key", sa.Text(), nullable=False),
        sa.Column("embedding", postgresql.ARRAY(postgresql.REAL()), nullable=True),
        sa.Column(
            "embedding_model_version", sa.Text(), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("vector_indexed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sample_key", sa.Float(), server_default=sa.text("random()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_rank_videos")),
    )
    op.create_index(
        "ix_rank_videos_creator_id_published_at", "rank_videos", ["creator_id", "published_at"]
    )
    op.create_index("ix_rank_videos_published_at", "rank_videos", ["published_at"])
    op.create_index("ix_rank_videos_sample_key", "rank_videos", ["sample_key"])
    op.create_index(
        "ix_rank_videos_unindexed",
        "rank_videos",
        ["video_id"],
        postgresql_where=sa.text("embedding IS NOT NULL AND NOT vector_indexed"),
    )
    op.create_table(
        "rank_follows",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", "creator_id", name=op.f("pk_rank_follows")),
    )
    op.create_index("ix_rank_follows_creator_id", "rank_follows", ["creator_id"])


def downgrade() -> None:
    op.drop_index("ix_rank_follows_creator_id", table_name="rank_follows")
    op.drop_table("rank_follows")
    op.drop_index("ix_rank_videos_unindexed", table_name="rank_videos")
    op.drop_index("ix_rank_videos_sample_key", table_name="rank_videos")
    op.drop_index("ix_rank_videos_published_at", table_name="rank_videos")
    op.drop_index("ix_rank_videos_creator_id_published_at", table_name="rank_videos")
    op.drop_table("rank_videos")
