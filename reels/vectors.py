"""Milvus adapter: a video-embedding collection behind a small sync + async API.

Locally this opens Milvus Lite 2.5.x by file path (it wraps Milvus' C++ core and
starts a private ``milvus`` server process talking over a Unix socket); in production
the same code points at a Milvus cluster with ``http://host:19530``.

Milvus Lite facts this module works around (measured, see shared DESIGN.md):

* Only FLAT, IVF_FLAT and AUTOINDEX index types exist locally.
* The db file name must be at most 36 characters of ``[A-Za-z0-9._-]``; we check it
  up front so the error names the real cause instead of "Open local milvus failed".
* The file lock is per process: exactly one service (svc_rank) opens the file.
* ``MilvusClient.close()`` does *not* stop the Lite server process (it lives until
  interpreter exit). ``VectorIndex.close()`` releases it explicitly once the last
  ``VectorIndex`` on that path in this process is closed, so tests and restarts do
  not leak ``milvus`` processes or hold the lock.
* Starting a Lite server takes about 1.5 s (it waits 0.5 s to detect early exit).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pymilvus import DataType, MilvusClient

from reels.config import platform

_LITE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,36}$")
INDEX_TYPES = ("FLAT", "IVF_FLAT", "AUTOINDEX")
METRICS = ("COSINE", "IP", "L2")
ID_MAX_LENGTH = 64

# Lite servers opened by this module, by resolved path -> number of open VectorIndex.
_lite_refs: dict[str, int] = {}
_lite_lock = threading.Lock()


def default_uri() -> str:
    """``REELS_MILVUS_URI`` (PlatformSettings), else ``<var>/milvus/reels.db``."""
    return platform().milvus_uri


def is_lite(uri: str) -> bool:
    """A Milvus Lite URI is a local path ending in ``.db`` (pymilvus' own rule)."""
    return uri.endswith(".db") and not uri.startswith(("http://", "https://", "tcp://"))


def _lite_path(uri: str) -> Path:
    """Validate a Lite path and make sure its folder exists."""
    path = Path(uri.removeprefix("file://")).expanduser().resolve()
    if not _LITE_NAME.match(path.name):
        raise ValueError(
            f"Milvus Lite db file name {path.name!r} must be 1-36 chars of [A-Za-z0-9._-]"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _import_lite() -> None:
    """Import milvus_lite quietly: 2.5.1 imports the deprecated ``pkg_resources``
    (hence ``setuptools<82``) and warns on every process start; the warning is
    known and not actionable for us."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import milvus_lite.server_manager  # noqa: F401


def _release_lite(path: str) -> None:
    """Drop one reference; stop the Lite server when it was the last one."""
    with _lite_lock:
        refs = _lite_refs.get(path, 0) - 1
        if refs > 0:
            _lite_refs[path] = refs
            return
        _lite_refs.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


def _quote(value: str) -> str:
    """A Milvus filter string literal (JSON escaping matches Milvus' rules)."""
    return json.dumps(value)


class VectorIndex:
    """One Milvus collection of unit vectors keyed by a string id (the video id).

    Scalar fields ``creator_id`` (VARCHAR) and ``published_at`` (INT64, epoch ms) are
    stored beside each vector so recall can filter ("not by this creator", "newer
    than") inside Milvus instead of over-fetching. Scores are Milvus' similarity:
    for COSINE/IP higher is closer; for L2 lower is closer.
    """

    def __init__(
        self,
        uri: str | None = None,
        collection: str = "videos",
        dim: int = 256,
        metric: str = "COSINE",
        *,
        index_type: str = "FLAT",
        nlist: int = 1024,
        nprobe: int = 32,
        token: str = "",
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES} (what Milvus Lite has)")
        self.uri = uri or default_uri()
        self.collection = collection
        self.dim = dim
        self.metric = metric
        self.index_type = index_type
        self.nlist = nlist
        self.nprobe = nprobe
        self._lite_path: str | None = None
        if is_lite(self.uri):
            path = str(_lite_path(self.uri))
            with _lite_lock:
                # Count before connecting so a concurrent close cannot stop the server
                # between its start and our connection.
                _lite_refs[path] = _lite_refs.get(path, 0) + 1
            self._lite_path = path
            try:
                _import_lite()
                self._client = MilvusClient(uri=path)
            except Exception:
                self._lite_path = None
                _release_lite(path)
                raise
        else:
            self._client = MilvusClient(uri=self.uri, token=token)
        self._closed = False

    # -- sync API -----------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection and its index if missing, then load it for search.

        Idempotent, so every service start can call it.
        """
        c = self._client
        if not c.has_collection(self.collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            schema.add_field("creator_id", DataType.VARCHAR, max_length=ID_MAX_LENGTH)
            schema.add_field("published_at", DataType.INT64)
            index = c.prepare_index_params()
            params = {"nlist": self.nlist} if self.index_type == "IVF_FLAT" else {}
            index.add_index(
                "vector", index_type=self.index_type, metric_type=self.metric, params=params
            )
            c.create_collection(self.collection, schema=schema, index_params=index)
        c.load_collection(self.collection)

    def upsert(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace items ``{id, vector, creator_id?, published_at?}``.

        Upsert (not insert) so a re-delivered ``video.published`` event is harmless.
        """
        rows = []
        for item in items:
            vector = [float(x) for x in item["vector"]]
            if len(vector) != self.dim:
                raise ValueError(
                    f"vector for {item['id']!r} has {len(vector)} dims, not {self.dim}"
                )
            rows.append(
                {
                    "id": str(item["id"]),
                    "vector": vector,
                    "creator_id": str(item.get("creator_id") or ""),
                    "published_at": int(item.get("published_at") or 0),
                }
            )
        if not rows:
            return 0
        result = self._client.upsert(self.collection, rows)
        return int(result.get("upsert_count", len(rows)))

    def search(
        self, vector: Sequence[float], limit: int = 10, filter: str | None = None
    ) -> list[tuple[str, float]]:
        """Nearest neighbours of ``vector`` as ``(id, score)``, best first.

        ``filter`` is a Milvus boolean expression over the scalar fields, e.g.
        ``creator_id != "u1" and published_at > 1700000000000``; build string
        literals with :func:`filter_eq` / :func:`filter_in` rather than by hand.
        """
        params: dict[str, Any] = {"metric_type": self.metric}
        if self.index_type == "IVF_FLAT":
            params["params"] = {"nprobe": self.nprobe}
        hits = self._client.search(
            self.collection,
            data=[[float(x) for x in vector]],
            limit=limit,
            filter=filter or "",
            search_params=params,
            anns_field="vector",
        )
        return [(str(h["id"]), float(h["distance"])) for h in hits[0]]

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id (missing ids are ignored); returns Milvus' count."""
        ids = [str(i) for i in ids]
        if not ids:
            return 0
        result = self._client.delete(self.collection, ids=ids)
        return int(result.get("delete_count", 0)) if isinstance(result, dict) else len(ids)

    def count(self) -> int:
        """Live entities (deletes applied), via ``count(*)`` with strong consistency."""
        rows = self._client.query(
            self.collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def drop(self) -> None:
        """Drop the collection (tests, reindexing)."""
        if self._client.has_collection(self.collection):
            self._client.drop_collection(self.collection)

    def close(self) -> None:
        """Close the connection and, for Lite, stop its server once nobody uses it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        finally:
            if self._lite_path is not None:
                path, self._lite_path = self._lite_path, None
                _release_lite(path)

    # -- async wrappers -------------------------------------------------------------
    # pymilvus is synchronous (gRPC under the hood); run its calls in a thread so a
    # search never stalls the service's event loop.

    async def aensure_collection(self) -> None:
        await asyncio.to_thread(self.ensure_collection)

    async def aupsert(self, items: Iterable[Mapping[str, Any]]) -> int:
        return await asyncio.to_thread(self.upsert, list(items))

    async def asearch(
        self, vector: Sequence[float], limit: int = 10, filter: str | None = None
    ) -> list[tuple[str, float]]:
        return await asyncio.to_thread(self.search, vector, limit, filter)

    async def adelete(self, ids: Iterable[str]) -> int:
        return await asyncio.to_thread(self.delete, list(ids))

    async def acount(self) -> int:
        return await asyncio.to_thread(self.count)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def filter_eq(field: str, value: str | int) -> str:
    """``field == value`` with the value safely quoted."""
    return f"{field} == {_quote(value) if isinstance(value, str) else int(value)}"


def filter_in(field: str, values: Iterable[str]) -> str:
    """``field in [...]`` with each value safely quoted."""
    return f"{field} in [{', '.join(_quote(v) for v in values)}]"
