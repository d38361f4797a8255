"""Async SQLAlchemy engine and sessions for the metadata database (Postgres + psycopg 3).

One engine per process and URL: engines own a connection pool, so services build
one at startup and pass the session factory around instead of reconnecting.
"""

from __future__ import annotations

from sqlalchemy import make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from reels.config import platform


def database_url() -> str:
    """``REELS_DATABASE_URL`` (PlatformSettings); default: this checkout's own database."""
    return platform().database_url


def make_engine(url: str | URL | None = None, **kwargs: object) -> AsyncEngine:
    """An async engine; ``pool_pre_ping`` so a Postgres restart costs one retry, not errors."""
    options: dict[str, object] = {"pool_pre_ping": True}
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=10)
    options.update(kwargs)
    return create_async_engine(url or database_url(), **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit, so handlers can read them freely."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_database(url: str | URL | None = None) -> bool:
    """Create the URL's database if missing; True when it was created.

    CREATE DATABASE cannot run inside a transaction, so this connects to the
    ``postgres`` maintenance database in autocommit mode.
    """
    target = make_url(url or database_url())
    name = target.database
    if not name:
        raise ValueError(f"database URL has no database name: {target!r}")
    admin = _admin_engine(target)
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            await conn.execute(text(f'CREATE DATABASE "{_ident(name)}"'))
            return True
    finally:
        await admin.dispose()


async def drop_database(url: str | URL) -> None:
    """Drop the URL's database, disconnecting anyone still on it (tests' throwaway dbs)."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError(f"database URL has no database name: {target!r}")
    admin = _admin_engine(target)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _admin_engine(target: URL) -> AsyncEngine:
    """Autocommit, unpooled engine on the maintenance database of the same server."""
    return create_async_engine(
        target.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )


def _ident(name: str) -> str:
    """Refuse names that would need quoting tricks; database names here are ours."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"unsafe database name: {name!r}")
    return name
