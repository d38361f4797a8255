"""svc_transcode's branch: the transcode job queue (``transcode_jobs``).

Its own branch off 0001 (``branch_labels=("transcode",)``) because each service
owns its tables and migrations; ``upgrade heads`` applies every branch.

Revision ID: t0002
Revises: 0001
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("transcode",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcode_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stage", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("percent", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("permanent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("original_key", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead_lettered', 'cancelled')",
            name=op.f("ck_transcode_jobs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcode_jobs")),
        sa.UniqueConstraint("video_id", name=op.f("uq_transcode_jobs_video_id")),
    )
    op.create_index(
        "ix_transcode_jobs_state_next_attempt_at",
        "transcode_jobs",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "ix_transcode_jobs_created_at_id", "transcode_jobs", ["created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_transcode_jobs_created_at_id", table_name="transcode_jobs")
    op.drop_index("ix_transcode_jobs_state_next_attempt_at", table_name="transcode_jobs")
    op.drop_table("transcode_jobs")
