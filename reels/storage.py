"""Object storage: originals, HLS renditions, thumbnails.

Services see only the :class:`ObjectStore` protocol; the URL in ``REELS_STORAGE_URL``
picks the implementation:

* ``file:///path`` (default ``<REELS_VAR_DIR or repo/var>/objects``):
  :class:`LocalObjectStore`, a directory tree.
* ``s3://bucket/prefix``: reserved for an S3-compatible store; not implemented yet
  (see :func:`open_object_store`).

Two guarantees every implementation keeps, because readers (the media origin) run
concurrently with writers (upload, transcode):

* **No partial object is ever visible.** A key either does not exist or holds the
  complete bytes of one write.
* **Folders publish atomically.** A rendition set is written under a temporary
  prefix and then moved to its final prefix in one step (:meth:`publish_prefix`), so
  a player never sees a master playlist whose variants are missing.

Keys are ``/``-separated relative paths; ``..``, absolute paths, backslashes, empty
segments and NUL bytes are rejected with ``ValueError`` so a hostile key can never
escape the store.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from reels import faults
from reels.config import platform

DEFAULT_READ_CHUNK = 1024 * 1024
# Internal names (in-progress writes, folders being deleted or replaced) start with
# this; keys may not, so no key can collide with them and list() can hide them.
_TMP_PREFIX = ".part-"


def _write_fault() -> None:
    """Fault injection (reels.faults), in the worker thread of every write: ``disk``
    (a full disk: ENOSPC) and ``storage`` (the store failing: EIO)."""
    faults.inject_sync("disk", lambda m: OSError(errno.ENOSPC, f"No space left on device ({m})"))
    faults.inject_sync("storage", lambda m: OSError(errno.EIO, m))


def _read_fault() -> None:
    faults.inject_sync("storage", lambda m: OSError(errno.EIO, m))


def default_storage_url() -> str:
    """``REELS_STORAGE_URL`` (PlatformSettings), else a ``file://`` URL under the var dir."""
    return platform().storage_url


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` normalised (no trailing ``/``) or raise ``ValueError``.

    With ``prefix=True`` the empty string (the whole store) is allowed.
    """
    if not isinstance(key, str):
        raise ValueError("object key must be a string")
    if prefix:
        key = key.rstrip("/")
        if key == "":
            return key
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"invalid object key {key!r}")
        if part.startswith(_TMP_PREFIX):
            raise ValueError(f"object key segment may not start with {_TMP_PREFIX!r}: {key!r}")
    return key


@runtime_checkable
class ObjectStore(Protocol):
    """What services need from object storage (local directory or S3)."""

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the concatenated chunks under ``key``; returns the size. Atomic."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key``; returns the size. Atomic."""
        ...

    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store a local file under ``key``; ``move`` lets the store take the file itself
        (a rename on local disk, no copy of a 500 MB original). Atomic."""
        ...

    async def get_file(self, key: str, dest: Path) -> int:
        """Copy the object to a local file (the store's copy stays); returns the size."""
        ...

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` (``end=None``: to the end of the object)."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The whole object (small objects only: playlists, thumbnails)."""
        ...

    async def size(self, key: str) -> int:
        """Size in bytes; ``FileNotFoundError`` when missing."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Delete one object; returns whether it existed."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        ...

    async def rename(self, src: str, dst: str) -> None:
        """Move one object (atomic locally)."""
        ...

    async def publish_prefix(self, tmp_prefix: str, final_prefix: str) -> int:
        """Make everything under ``tmp_prefix`` appear under ``final_prefix`` at once.

        Replaces whatever was at ``final_prefix``; returns the object count.
        """
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted keys of the objects under ``prefix``."""
        ...


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


class LocalObjectStore:
    """An :class:`ObjectStore` on a local directory.

    Writes go to a hidden temp file in the destination folder and are moved into place
    with ``os.replace``, so readers see the old object or the new one, never a torn
    one. File I/O runs in worker threads to keep the event loop responsive.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, fsync: bool = False) -> None:
        if root is None:
            root = _path_from_file_url(default_storage_url())
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # fsync costs ~ms per file; turn it on where a crash must not lose acked data.
        self.fsync = fsync

    # -- paths --------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Filesystem path of ``key`` (validated; never outside the root)."""
        return self.root.joinpath(*validate_key(key).split("/"))

    def _prefix_path(self, prefix: str) -> Path:
        prefix = validate_key(prefix, prefix=True)
        return self.root.joinpath(*prefix.split("/")) if prefix else self.root

    def _tmp_file(self, dest: Path) -> tuple[IO[bytes], Path]:
        _write_fault()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
        return os.fdopen(fd, "wb"), Path(name)

    def _commit(self, fh: IO[bytes], tmp: Path, dest: Path) -> None:
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())
        fh.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)

    # -- writes -------------------------------------------------------------------

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Write chunk by chunk (one chunk in memory at a time), then publish."""
        dest = self.path(key)
        fh, tmp = await asyncio.to_thread(self._tmp_file, dest)
        size = 0
        try:
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(fh.write, chunk)
                    size += len(chunk)
            await asyncio.to_thread(self._commit, fh, tmp, dest)
        except BaseException:
            fh.close()
            tmp.unlink(missing_ok=True)
            raise
        return size

    async def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        dest = self.path(key)

        def put() -> int:
            size = os.path.getsize(src)
            if move:
                _write_fault()
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.chmod(src, 0o644)
                    os.replace(src, dest)
                    return size
                except OSError as exc:
                    if exc.errno != errno.EXDEV:  # another filesystem: copy instead
                        raise
            fh, tmp = self._tmp_file(dest)
            try:
                with open(src, "rb") as source:
                    shutil.copyfileobj(source, fh, DEFAULT_READ_CHUNK)
                self._commit(fh, tmp, dest)
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
            if move:
                os.unlink(src)
            return size

        return await asyncio.to_thread(put)

    async def get_file(self, key: str, dest: Path) -> int:
        src = self.path(key)

        def get() -> int:
            _read_fault()
            shutil.copyfile(src, dest)
            return os.path.getsize(dest)

        return await asyncio.to_thread(get)

    async def put_bytes(self, key: str, data: bytes) -> int:
        dest = self.path(key)

        def write() -> int:
            fh, tmp = self._tmp_file(dest)
            try:
                fh.write(data)
                self._commit(fh, tmp, dest)
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
            return len(data)

        return await asyncio.to_thread(write)

    # -- reads --------------------------------------------------------------------

    async def open_range(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` in chunks of at most ``chunk_size``.

        The file is opened before the first chunk, so a concurrent replace keeps
        serving the version this read started on.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end})")
        path = self.path(key)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(fh.seek, start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                n = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await asyncio.to_thread(fh.read, n)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def get_bytes(self, key: str) -> bytes:
        path = self.path(key)

        def read() -> bytes:
            _read_fault()
            return path.read_bytes()

        return await asyncio.to_thread(read)

    async def size(self, key: str) -> int:
        return (await asyncio.to_thread(self.path(key).stat)).st_size

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def list(self, prefix: str = "") -> list[str]:
        base = self._prefix_path(prefix)
        return await asyncio.to_thread(lambda: sorted(self._walk(base)))

    def _walk(self, base: Path) -> Iterator[str]:
        if base.is_file():
            yield base.relative_to(self.root).as_posix()
            return
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            # Hide in-progress writes and folders being deleted or replaced.
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            for name in filenames:
                if not name.startswith(_TMP_PREFIX):
                    yield (Path(dirpath) / name).relative_to(self.root).as_posix()

    # -- deletes / moves ------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        path = self.path(key)

        def unlink() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(unlink)

    async def delete_prefix(self, prefix: str) -> int:
        if not validate_key(prefix, prefix=True):
            raise ValueError("refusing to delete the whole store")
        base = self._prefix_path(prefix)

        def remove() -> int:
            count = sum(1 for _ in self._walk(base))
            if base.is_dir():
                # Move aside first so the folder disappears in one step.
                trash = base.with_name(f"{_TMP_PREFIX}del-{uuid.uuid4().hex}")
                os.replace(base, trash)
                shutil.rmtree(trash, ignore_errors=True)
            elif base.is_file():
                base.unlink()
            return count

        return await asyncio.to_thread(remove)

    async def rename(self, src: str, dst: str) -> None:
        src_path, dst_path = self.path(src), self.path(dst)

        def move() -> None:
            dst_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src_path, dst_path)

        await asyncio.to_thread(move)

    async def publish_prefix(self, tmp_prefix: str, final_prefix: str) -> int:
        """Rename the ``tmp_prefix`` folder to ``final_prefix`` in one ``rename(2)``.

        An existing ``final_prefix`` is swapped with the new folder in one
        ``renameat2(RENAME_EXCHANGE)`` (Linux), so readers see the old complete set or
        the new complete set and never a missing or half-written one; the old set is
        removed afterwards. Where the exchange is unavailable, the old folder is moved
        aside first, leaving a brief window where the prefix is absent.
        """
        src = self._prefix_path(validate_key(tmp_prefix))
        dst = self._prefix_path(validate_key(final_prefix))
        if src == dst or dst.is_relative_to(src) or src.is_relative_to(dst):
            raise ValueError("tmp_prefix and final_prefix must not contain each other")

        def publish() -> int:
            if not src.is_dir():
                raise FileNotFoundError(f"nothing staged under {tmp_prefix!r}")
            count = sum(1 for _ in self._walk(src))
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if dst.exists():
                if _exchange(src, dst):
                    shutil.rmtree(src, ignore_errors=True)  # src now holds the old set
                    return count
                old = dst.with_name(f"{_TMP_PREFIX}old-{uuid.uuid4().hex}")
                os.replace(dst, old)
            os.replace(src, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return count

        return await asyncio.to_thread(publish)

    def staging_prefix(self, final_prefix: str) -> str:
        """A fresh temp prefix beside ``final_prefix`` to stage a folder in.

        Beside (same parent) so :meth:`publish_prefix` is a same-filesystem rename.
        """
        final_prefix = validate_key(final_prefix)
        parent, _, name = final_prefix.rpartition("/")
        return f"{parent + '/' if parent else ''}.staging-{name}-{uuid.uuid4().hex}"


def _path_from_file_url(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme not in ("file", ""):
        raise ValueError(f"not a file URL: {url!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file URL must be local: {url!r}")
    return Path(unquote(parsed.path))


def open_object_store(url: str | None = None) -> ObjectStore:
    """The store named by ``url`` (default: env ``REELS_STORAGE_URL``, else local)."""
    url = url or default_storage_url()
    scheme = urlparse(url).scheme
    if scheme in ("file", ""):
        return LocalObjectStore(_path_from_file_url(url))
    if scheme == "s3":
        raise NotImplementedError(
            "s3:// object storage is not implemented yet: S3ObjectStore does not exist; "
            "use a file:// URL (REELS_STORAGE_URL) for now"
        )
    raise ValueError(f"unsupported object storage URL {url!r} (use file:///path or s3://)")
