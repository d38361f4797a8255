"""Metadata database: engine, models and Alembic migrations."""

from reels.db.engine import (
    create_database,
    database_url,
    drop_database,
    make_engine,
    make_sessionmaker,
)
from reels.db.migrate import downgrade, migrate

__all__ = [
    "create_database",
    "database_url",
    "downgrade",
    "drop_database",
    "make_engine",
    "make_sessionmaker",
    "migrate",
]
