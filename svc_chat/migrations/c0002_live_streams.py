"""svc_chat's branch: live streams.

Its own branch off 0001 (``branch_labels=("chat",)``) because each service owns its
tables and migrations; ``upgrade heads`` applies every branch.

Revision ID: c0002
Revises: 0001
Create Date: 2027-01-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("chat",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_streams",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("creator_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), server_default=sa.text("'CREATED'"), nullable=False),
        sa.Column("stream_key_hash", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "peak_viewer_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "unique_viewer_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.CheckConstraint(
            "state IN ('CREATED', 'LIVE', 'ENDED')", name=op.f("ck_live_streams_state")
        ),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_live_streams")),
    )
    op.create_index("ix_live_streams_state_created_at", "live_streams", ["state", "created_at"])
    op.create_index(
        "ix_live_streams_creator_id_created_at", "live_streams", ["creator_id", "created_at"]
    )
    op.create_index(
        "ix_live_streams_stream_key_hash", "live_streams", ["stream_key_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_live_streams_stream_key_hash", table_name="live_streams")
    op.drop_index("ix_live_streams_creator_id_created_at", table_name="live_streams")
    op.drop_index("ix_live_streams_state_created_at", table_name="live_streams")
    op.drop_table("live_streams")
