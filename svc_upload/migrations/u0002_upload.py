"""svc_upload's branch: video outputs and file facts, upload checksum and failure.

Videos gain what the client sent (filename, mime type), what transcoding reports
through UpdateVideoStatus (renditions, playlist/thumbnail/preview/storyboard keys)
and the soft-delete time; uploads gain the declared sha256 and a failure reason.
Own branch ("upload") beside svc_transcode's so both land without a merge point;
``python -m reels.db upgrade`` runs ``upgrade heads``.

Revision ID: u0002
Revises: 0001
Create Date: 2026-11-21 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "u0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("upload",)
depends_on: str | Sequence[str] | None = None

_VIDEO_TEXT = (
    "filename",
    "mime_type",
    "master_playlist_key",
    "thumbnail_key",
    "preview_key",
    "storyboard_key",
)
_UPLOAD_TEXT = ("expected_sha256", "filename", "mime_type", "failure_reason")


def upgrade() -> None:
    for name in _VIDEO_TEXT:
        op.add_column("videos", sa.Column(name, sa.Text(), nullable=True))
    op.add_column(
        "videos",
        sa.Column(
            "renditions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("videos", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    for name in _UPLOAD_TEXT:
        op.add_column("uploads", sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    for name in _UPLOAD_TEXT:
        op.drop_column("uploads", name)
    op.drop_column("videos", "deleted_at")
    op.drop_column("videos", "renditions")
    for name in _VIDEO_TEXT:
        op.drop_column("videos", name)
