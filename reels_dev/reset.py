"""`make reset`: forget everything this checkout stored, and nothing of anyone else's.

Drops this checkout's database (``REELS_DATABASE_URL``, default ``reels_<checkout>``),
deletes its objects, vectors (Milvus Lite file), analytics (chDB directory) and the
Redis keys under its prefix (``REELS_REDIS_PREFIX``, default ``reels:<checkout>:``).
Kafka topics need nothing: Tansu keeps them in memory only, so stopping the mesh
(`make down`) already dropped them. Keys, logs and traces stay (`make clean` removes
var/ as a whole).

Only local, dev-sized things are touched: a database on a remote host, an
``s3://`` store, a ClickHouse or Milvus server are reported and left alone.
scripts/reset.sh refuses to run while `make up` is running.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from sqlalchemy import make_url

from reels.config import PlatformSettings, checkout_slug, var_dir

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None, ""}


def _say(what: str, detail: str) -> None:
    print(f"reset: {what:<10} {detail}")


def _remove(path: Path) -> bool:
    if path.is_dir():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False


def reset_database(url: str) -> None:
    from reels.db.engine import drop_database

    target = make_url(url)
    if target.host not in LOCAL_HOSTS:
        _say("database", f"{target.database} on {target.host} is not local: left alone")
        return
    if target.database in (None, "", "postgres", "template0", "template1"):
        _say("database", f"refusing to drop {target.database!r}")
        return
    asyncio.run(drop_database(url))
    _say("database", f"dropped {target.database} (make up / make setup creates it again)")


def reset_objects(storage_url: str) -> None:
    parsed = urlparse(storage_url)
    if parsed.scheme != "file":
        _say("objects", f"{storage_url} is not a local store: left alone")
        return
    path = Path(unquote(parsed.path))
    removed = _remove(path)
    # Unfinished uploads staged outside the store (svc_upload's fallback).
    removed = _remove(var_dir() / "uploads") or removed
    _say("objects", f"deleted {path}" if removed else f"none ({path})")


def reset_analytics(dsn: str) -> None:
    if not dsn.startswith("chdb://"):
        _say("analytics", f"{dsn.split('@')[-1]} is a ClickHouse server: left alone")
        return
    path = Path(dsn.removeprefix("chdb://"))
    _say("analytics", f"deleted {path}" if _remove(path) else f"none ({path})")


def reset_vectors(uri: str) -> None:
    if uri.startswith(("http://", "https://", "tcp://")):
        _say("vectors", f"{uri} is a Milvus server: left alone")
        return
    path = Path(uri)
    if path.parent == var_dir() / "milvus":  # the default: the directory is ours alone
        removed = _remove(path.parent)
    else:  # Milvus Lite keeps a lock file beside its database file
        removed = _remove(path)
        for sibling in path.parent.glob(f".{path.name}*"):
            removed = _remove(sibling) or removed
    _say("vectors", f"deleted {path}" if removed else f"none ({path})")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def reset_redis(url: str, prefix: str) -> None:
    import redis

    if not prefix:
        _say("redis", "REELS_REDIS_PREFIX is empty: refusing to delete every key")
        return
    client = redis.Redis.from_url(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    _say("redis", f"deleted {deleted} keys under {prefix!r}")


def main(settings: PlatformSettings | None = None) -> None:
    settings = settings or PlatformSettings.from_env()
    print(f"reset: checkout {checkout_slug()} (var: {var_dir()})")
    reset_database(settings.database_url)
    reset_objects(settings.storage_url)
    reset_vectors(settings.milvus_uri)
    reset_analytics(settings.clickhouse_dsn)
    reset_redis(settings.redis_url, settings.redis_prefix)
    _say("topics", "nothing to do: Tansu keeps topics in memory only (gone with make down)")
