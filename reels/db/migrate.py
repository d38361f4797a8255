"""Run Alembic migrations from code (services at startup, tests, ``python -m reels.db``).

Alembic's commands are synchronous; from async code they run on one async
connection through ``run_sync``, so no second event loop or thread is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from reels.db.engine import database_url, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
REPO_ROOT = ALEMBIC_INI.parents[2]
# Each service owns its tables and their migration branch, kept beside its models.
SERVICE_MIGRATIONS = ("svc_upload", "svc_transcode", "svc_stream", "svc_rank", "svc_chat")
# Modules whose tables Alembic compares against the migrated schema (Base.metadata).
MODEL_MODULES = (
    "reels.db.models",
    "svc_upload.models",
    "svc_transcode.models",
    "svc_stream.playback.models",
    "svc_stream.engagement.models",
    "svc_rank.models",
    "svc_chat.models",
)


def version_locations() -> list[Path]:
    """The shared base revision plus every service's own migration folder."""
    return [
        ALEMBIC_INI.parent / "migrations" / "versions",
        *(REPO_ROOT / svc / "migrations" for svc in SERVICE_MIGRATIONS),
    ]


def load_models() -> None:
    """Import every table module so ``Base.metadata`` knows the whole schema."""
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(name)


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic config pointing into the package, with the URL filled in.

    Alembic is imported here, not at module level: every service imports ``reels.db``
    but only migrations need Alembic (about 11 MB of RSS).
    """
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(str(p) for p in version_locations()))
    target = url or database_url()
    rendered = target if isinstance(target, str) else target.render_as_string(hide_password=False)
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


async def _run(url: str | URL | None, action: str, revision: str) -> None:
    cfg = alembic_config(url)
    engine = make_engine(url or database_url(), poolclass=NullPool)

    from alembic import command

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def migrate(url: str | URL | None = None, revision: str = "heads") -> None:
    """``alembic upgrade heads`` on the given (or configured) database.

    Every service owns a migration branch, hence "heads".
    """
    await _run(url, "upgrade", revision)


async def downgrade(url: str | URL | None = None, revision: str = "base") -> None:
    """``alembic downgrade base`` by default: for tests and throwaway databases."""
    await _run(url, "downgrade", revision)
