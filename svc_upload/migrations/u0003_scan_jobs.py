"""svc_upload's branch: uploads held for the malware scan (scan_jobs).

An upload whose scan could not run (clamd unavailable) is held here with its
``video.uploaded`` payload until a clean scan releases it (svc_upload.scan).

Revision ID: u0003
Revises: u0002
Create Date: 2026-12-01 00:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "u0003"
down_revision: str | Sequence[str] | None = "u0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scan_jobs",
        sa.Column(
            "video_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("videos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("original_key", sa.Text(), nullable=False),
        sa.Column("event", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index("ix_scan_jobs_next_attempt_at", "scan_jobs", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_scan_jobs_next_attempt_at", table_name="scan_jobs")
    op.drop_table("scan_jobs")
