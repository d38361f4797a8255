"""transcode_jobs.trace_context: the W3C trace context a job's work continues.

The consumer stores the context of the ``video.uploaded`` it handled (its CONSUMER
span), so every attempt of the job (after a retry, a lease takeover or a restart)
joins the upload's trace instead of starting a new one.

Revision ID: t0003
Revises: t0002
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "t0003"
down_revision: str | Sequence[str] | None = "t0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "transcode_jobs",
        sa.Column(
            "trace_context",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("transcode_jobs", "trace_context")
