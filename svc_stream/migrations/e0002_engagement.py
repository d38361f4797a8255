"""svc_stream's engagement branch: likes, comments, shares and follows.

PostgreSQL is the source of truth for engagement; every change also goes out as an
EngagementEvent through the outbox in the same transaction. Own branch
(``branch_labels=("engagement",)``) beside the others; ``upgrade heads`` applies all.

Revision ID: e0002
Revises: 0001
Create Date: 2026-11-22 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("engagement",)
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "video_likes",
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("video_id", "user_id", name=op.f("pk_video_likes")),
    )
    op.create_index("ix_video_likes_user_id", "video_likes", ["user_id"], unique=False)
    op.create_table(
        "video_comments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("client_comment_id", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_comments")),
    )
    op.create_index(
        "ix_video_comments_video_id_created_at_id",
        "video_comments",
        ["video_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_video_comments_user_id_client_comment_id",
        "video_comments",
        ["user_id", "client_comment_id"],
        unique=True,
        postgresql_where=sa.text("client_comment_id IS NOT NULL"),
    )
    op.create_table(
        "video_shares",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_shares")),
    )
    op.create_index("ix_video_shares_video_id", "video_shares", ["video_id"], unique=False)
    op.create_table(
        "creator_follows",
        sa.Column("follower_id", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "follower_id <> creator_id", name=op.f("ck_creator_follows_no_self_follow")
        ),
        sa.PrimaryKeyConstraint("follower_id", "creator_id", name=op.f("pk_creator_follows")),
    )
    op.create_index(
        "ix_creator_follows_creator_id", "creator_follows", ["creator_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("creator_follows")
    op.drop_index("ix_video_shares_video_id", table_name="video_shares")
    op.drop_table("video_shares")
    op.drop_index("uq_video_comments_user_id_client_comment_id", table_name="video_comments")
    op.drop_index("ix_video_comments_video_id_created_at_id", table_name="video_comments")
    op.drop_table("video_comments")
    op.drop_index("ix_video_likes_user_id", table_name="video_likes")
    op.drop_table("video_likes")
