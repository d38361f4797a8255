"""svc_rank: visual vectors and re-upload detection on ``rank_videos``.

* ``visual_embedding`` — the video's 1280-d unit visual vector from ``video.published``
  (EfficientNet-Lite0 frames, mean-pooled); the source of truth of the second Milvus
  collection (``videos_visual``), which near-duplicate detection searches.
* ``visual_checked`` — the visual vector was checked against the other creators'
  published videos and copied to Milvus (the indexer's queue, like
  ``vector_indexed``).
* ``reupload_of`` — the id of the earliest published video of another creator whose
  visual vector is within ``REELS_RANK_REUPLOAD_COSINE``; empty: an original.

Revision ID: r0003
Revises: r0002
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "r0003"
down_revision: str | Sequence[str] | None = "r0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rank_videos",
        sa.Column("visual_embedding", postgresql.ARRAY(postgresql.REAL()), nullable=True),
    )
    op.add_column(
        "rank_videos",
        sa.Column("visual_checked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "rank_videos",
        sa.Column("reupload_of", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.create_index(
        "ix_rank_videos_visual_unchecked",
        "rank_videos",
        ["published_at"],
        postgresql_where=sa.text("visual_embedding IS NOT NULL AND NOT visual_checked"),
    )


def downgrade() -> None:
    op.drop_index("ix_rank_videos_visual_unchecked", table_name="rank_videos")
    op.drop_column("rank_videos", "reupload_of")
    op.drop_column("rank_videos", "visual_checked")
    op.drop_column("rank_videos", "visual_embedding")
