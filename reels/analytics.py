"""ClickHouse adapter: one small async surface over clickhouse-connect.

Locally the engine is chDB (ClickHouse in-process, ``chdb:///path``); in production
the same code talks to a ClickHouse server over HTTP(S). The DSN alone decides which.

clickhouse-connect 1.12 supports chDB natively through ``get_client(dsn="chdb:///...")``
(an experimental ``ChdbClient``), but only with the *sync* client: its async client
refuses chDB. So this adapter keeps one sync client and runs every call on a dedicated
executor, which keeps the event loop free and works identically for both back ends.

chDB rules worth knowing (measured, see shared DESIGN.md):

* Only **one process** may open a chDB data path, and one process may host only one
  engine path at a time. Exactly one service (svc_stream) owns analytics storage;
  everyone else asks it over gRPC.
* chDB serialises calls on one connection anyway, so its executor has one worker: a
  larger pool would only queue threads behind the engine lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError

from reels.config import platform

T = TypeVar("T")


def default_dsn() -> str:
    """The DSN to use when none is given: ``REELS_CLICKHOUSE_DSN`` (PlatformSettings),
    else a chDB directory under the var dir."""
    return platform().clickhouse_dsn


def is_embedded(dsn: str) -> bool:
    """True when the DSN names an in-process chDB engine rather than a server."""
    return dsn.startswith("chdb:")


def _open_client(dsn: str, database: str | None) -> Client:
    """Build the sync clickhouse-connect client for either back end."""
    if is_embedded(dsn):
        path = urlparse(dsn).path
        if path and path not in ("/memory", "/:memory:"):
            # chDB creates the leaf directory but not its parents.
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"dsn": dsn}
        if database:
            kwargs["database"] = database
        try:
            return clickhouse_connect.get_client(**kwargs)
        except ProgrammingError as exc:
            raise RuntimeError(
                f"cannot open chDB at {path!r}: only one process may open a chDB path "
                f"(and one path per process); is another service holding it? ({exc})"
            ) from exc
    if not dsn.startswith(("http://", "https://")):
        raise ValueError(f"unsupported ClickHouse DSN {dsn!r}: use chdb:///path or http(s)://")
    # No server-side session: a session id makes concurrent queries from the
    # executor's threads fail with "concurrent queries within the same session".
    return clickhouse_connect.get_client(dsn=dsn, database=database, autogenerate_session_id=False)


class Analytics:
    """Async access to ClickHouse / chDB.

    Open one per process (per path for chDB) and share it: opening is not free and
    chDB refuses a second process on the same path.
    """

    def __init__(
        self, dsn: str | None = None, *, database: str | None = None, max_workers: int = 4
    ) -> None:
        self.dsn = dsn or default_dsn()
        self.embedded = is_embedded(self.dsn)
        self._client = _open_client(self.dsn, database)
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.embedded else max_workers,
            thread_name_prefix="clickhouse",
        )
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking client call off the event loop."""
        if self._closed:
            raise RuntimeError("Analytics is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run DDL or any statement whose result is at most a single value."""
        return await self._run(self._client.command, sql, parameters=parameters)

    async def insert_rows(
        self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]
    ) -> int:
        """Insert rows (tuples in ``column_names`` order) in one block; returns the count.

        ClickHouse wants few large inserts, so callers should batch (e.g. one call per
        consumed Kafka batch) rather than insert row by row.
        """
        if not rows:
            return 0
        summary = await self._run(
            self._client.insert, table, list(rows), column_names=list(column_names)
        )
        return int(getattr(summary, "written_rows", 0) or len(rows))

    async def insert_columns(
        self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str]
    ) -> int:
        """Insert one block given column-wise (``columns[i]`` holds the values of
        ``column_names[i]``, all of one length); returns the row count.

        clickhouse-connect encodes a column in one pass instead of one Python step per
        cell: ~1.7x less CPU than :meth:`insert_rows` on the same block (measured,
        docs/DECISIONS.md "Events throughput")."""
        if not columns or not columns[0]:
            return 0
        summary = await self._run(
            self._client.insert,
            table,
            list(columns),
            column_names=list(column_names),
            column_oriented=True,
        )
        return int(getattr(summary, "written_rows", 0) or len(columns[0]))

    async def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a SELECT and return its rows as tuples.

        Use server-side binding (``{name:Type}`` in the SQL) or client-side
        ``%(name)s`` placeholders for values; never format user input into SQL.
        """
        result = await self._run(self._client.query, sql, parameters=parameters)
        return [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        """Release the client (and, for chDB, the engine path) and the executor."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._client.close()

    async def aclose(self) -> None:
        """Close without blocking the event loop on in-flight calls."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Analytics:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
