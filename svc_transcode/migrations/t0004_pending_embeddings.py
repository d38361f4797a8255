"""transcode_jobs: embeddings that are still to be computed after a video was published.

An embedding failure (Triton down or timing out) never blocks publishing: the job
ends ``succeeded`` with ``stage = 'embeddings_pending'``, keeping the sampled frames
(``pending_frames``) and the ``video.published`` it sent without vectors
(``pending_event``). The backfill (svc_transcode/backfill.py) retries due ones
(``next_attempt_at``), counting ``embedding_attempts``, and sends the event again with
the vectors. The partial index serves exactly its claim query.

Revision ID: t0004
Revises: t0003
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0004"
down_revision: str | Sequence[str] | None = "t0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "transcode_jobs",
        sa.Column("embedding_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("transcode_jobs", sa.Column("pending_frames", sa.LargeBinary(), nullable=True))
    op.add_column("transcode_jobs", sa.Column("pending_event", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_transcode_jobs_embeddings_due",
        "transcode_jobs",
        ["next_attempt_at"],
        postgresql_where=sa.text("stage = 'embeddings_pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_transcode_jobs_embeddings_due", table_name="transcode_jobs")
    op.drop_column("transcode_jobs", "pending_event")
    op.drop_column("transcode_jobs", "pending_frames")
    op.drop_column("transcode_jobs", "embedding_attempts")
