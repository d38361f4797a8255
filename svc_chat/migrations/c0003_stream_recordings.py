"""svc_chat's branch: the video a live stream's recording became.

``recording_video_id`` is set, with the ``streams.recordings`` outbox row in the same
transaction, when the RTMP ingest hands an ended stream's recording to the VOD
pipeline (svc_chat.ingest.recording); NULL before and for streams never published.

Revision ID: c0003
Revises: c0002
Create Date: 2027-01-20 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0003"
down_revision: str | Sequence[str] | None = "c0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("live_streams", sa.Column("recording_video_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("live_streams", "recording_video_id")
