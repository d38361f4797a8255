"""Tables of the metadata database.

Schema changes go through Alembic migrations in ``reels/db/migrations/versions``;
these classes must match the migrated schema (a test compares them).
One owner per store: ``videos`` and ``uploads`` are written only by svc_upload
(svc_transcode reports progress through it or through events it owns).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose metadata Alembic migrates."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def now_column() -> Any:
    """A NOT NULL timestamptz defaulting to now() (every table's created_at)."""
    return _now()


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Outbox(Base):
    """Events written in the same transaction as the state change they announce.

    A relay publishes unsent rows in id order and stamps ``sent_at``; the broker can
    lose data (Tansu is memory-only) without the platform losing an event.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's hot path: the oldest unsent rows, found without scanning sent ones.
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProcessedEvent(Base):
    """Event ids a consumer group has already applied: the idempotency ledger.

    Kafka delivers at least once (and a memory-only broker replays from the start
    after a restart), so each handler's effects commit together with this row.
    """

    __tablename__ = "processed_events"

    consumer_group: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str | None] = mapped_column(Text, nullable=True)
    processed_at: Mapped[datetime] = _now()
