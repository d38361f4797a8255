"""Staged upload files: append + fsync, incremental sha256, then one move into storage.

A staged file lives beside the object store (``<store root>/.part-uploads/`` for a
local store; ``REELS_UPLOAD_STAGING_DIR`` overrides), so finishing an upload is a
rename on the same filesystem instead of a second 500 MB copy. The store hides
``.part-`` names, so half-uploaded files never show up as objects.

The database offset is the truth: the staged file may be longer than it after a
crash between fsync and the offset update, so every write first truncates the file
to the committed offset. The running sha256 lives in memory (hashlib cannot
export its state); when it is missing or behind (service restart, a cancelled
write), the staged bytes are rehashed once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reels.storage import LocalObjectStore, ObjectStore

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")

READ_PIECE = 1024 * 1024


class StagedBytesMissing(FileNotFoundError):
    """The staged file of an upload is gone or shorter than the bytes the database says
    were received (``expected``): the process stopped between handing the file to the
    store and committing that (see ``Uploads.complete``), or the staging directory was
    emptied. Not a client error; :class:`svc_upload.uploads.Uploads` decides what to do."""

    def __init__(self, upload_id: str, expected: int, found: int) -> None:
        super().__init__(f"staged bytes of upload {upload_id}: {found} of {expected}")
        self.upload_id = upload_id
        self.expected = expected
        self.found = found


@dataclass
class RunningHash:
    """sha256 of the first ``offset`` bytes of a staged file."""

    offset: int
    hasher: hashlib._Hash  # type: ignore[name-defined]


def default_staging_dir(store: ObjectStore, configured: Path | None = None) -> Path:
    """``configured`` (REELS_UPLOAD_STAGING_DIR), else beside a local store (same
    filesystem, so completing an upload is a rename), else under the var dir."""
    if configured:
        return Path(configured)
    if isinstance(store, LocalObjectStore):
        return store.root / ".part-uploads"
    from reels.config import var_dir

    return var_dir() / "uploads"


class StagingArea:
    """Staged files by upload id, and the running hashes that go with them."""

    def __init__(self, root: Path, *, fsync: bool = True, executor: Executor | None = None) -> None:
        self.root = root.absolute()  # clamd is given absolute paths (svc_upload.scan)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.executor = executor
        """Threads for file writes, fdatasync and hashing (REELS_UPLOAD_IO_THREADS);
        None: the loop's default pool (cores + 4 threads, which queued a burst's
        fsyncs behind each other)."""
        self._hashes: dict[str, RunningHash] = {}

    def offload(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run blocking ``fn`` in :attr:`executor`, off the event loop."""
        return asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(fn, *args, **kwargs)
        )

    def path(self, upload_id: str) -> Path:
        return self.root / upload_id

    # -- writes (called with the upload's lock held) -------------------------------

    def open_at(self, upload_id: str, offset: int) -> StagedWriter:
        """A writer appending at ``offset`` (the committed offset)."""
        return StagedWriter(self, upload_id, offset)

    async def running_hash(self, upload_id: str, offset: int) -> RunningHash:
        """The running hash at exactly ``offset``, rehashing the staged file if needed."""
        current = self._hashes.get(upload_id)
        if current is not None and current.offset == offset:
            return current
        path = self.path(upload_id)

        def rehash() -> RunningHash:
            hasher = hashlib.sha256()
            remaining = offset
            if remaining:
                try:
                    fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
                except FileNotFoundError as exc:
                    raise StagedBytesMissing(upload_id, offset, 0) from exc
                with fh:
                    while remaining:
                        piece = fh.read(min(READ_PIECE * 4, remaining))
                        if not piece:
                            raise StagedBytesMissing(upload_id, offset, offset - remaining)
                        hasher.update(piece)
                        remaining -= len(piece)
            return RunningHash(offset, hasher)

        current = await self.offload(rehash)
        self._hashes[upload_id] = current
        return current

    async def append_durably(self, upload_id: str, offset: int, data: Buffer) -> StagedWriter:
        """Write ``data`` at ``offset`` (the committed offset), hash it, fdatasync.

        One worker-thread call. Returns the writer; its ``snapshot()`` is the hash to
        adopt once the new offset is committed.
        """
        running = await self.running_hash(upload_id, offset)
        hasher = running.hasher.copy()
        path, fsync = self.path(upload_id), self.fsync

        def work() -> None:
            with open(path, "r+b" if path.exists() else "w+b") as fh:
                fh.truncate(offset)
                fh.seek(offset)
                fh.write(data)
                hasher.update(data)
                fh.flush()
                if fsync:
                    os.fdatasync(fh.fileno())

        await self.offload(work)
        writer = StagedWriter(self, upload_id, offset)
        writer.offset = offset + len(data)
        writer._hash = RunningHash(writer.offset, hasher)
        return writer

    def adopt(self, upload_id: str, running: RunningHash) -> None:
        """``running`` is the hash at the newly committed offset."""
        self._hashes[upload_id] = running

    def forget_hash(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)

    async def read_range(self, upload_id: str, offset: int, length: int) -> bytes:
        """Stored bytes at [offset, offset+length): to check a repeated chunk."""

        def read() -> bytes:
            with open(self.path(upload_id), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)

        return await self.offload(read)

    async def discard(self, upload_id: str) -> None:
        self.forget_hash(upload_id)
        await self.offload(self.path(upload_id).unlink, missing_ok=True)

    async def publish(self, upload_id: str, store: ObjectStore, key: str) -> None:
        """Hand the staged file to the store under ``key`` (a rename on local disk)."""
        await store.put_file(key, self.path(upload_id), move=True)
        self.forget_hash(upload_id)

    async def restore(self, upload_id: str, store: ObjectStore, key: str) -> None:
        """Undo ``publish`` when the hand-over transaction failed, so the client's retry
        of complete finds its bytes staged again instead of a missing file."""
        await store.get_file(key, self.path(upload_id))
        await store.delete(key)
        self.forget_hash(upload_id)


class StagedWriter:
    """Appends pieces to one staged file, hashing them; ``commit`` makes them durable.

    Pieces go to disk as they arrive (a tus PATCH body of any size never sits in
    memory); the hash given to ``commit`` is a copy, so a write that is abandoned
    (checksum mismatch, dropped connection) leaves the running hash untouched.
    """

    def __init__(self, area: StagingArea, upload_id: str, offset: int) -> None:
        self.area = area
        self.upload_id = upload_id
        self.start = offset
        self.offset = offset
        self._fh: object | None = None
        self._hash: RunningHash | None = None

    async def open(self) -> StagedWriter:
        running = await self.area.running_hash(self.upload_id, self.start)
        self._hash = RunningHash(self.start, running.hasher.copy())
        path = self.area.path(self.upload_id)

        def open_file():  # type: ignore[no-untyped-def]
            fh = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed in close()
            fh.truncate(self.start)
            fh.seek(self.start)
            return fh

        self._fh = await self.area.offload(open_file)
        return self

    def _write_fn(self, data: Buffer, extra: object | None = None):  # type: ignore[no-untyped-def]
        assert self._fh is not None and self._hash is not None
        fh, hasher = self._fh, self._hash.hasher

        def write() -> None:
            # One worker-thread call per piece: the write and the hash both release the
            # GIL for large buffers, so they overlap with the event loop reading the next.
            fh.write(data)  # type: ignore[attr-defined]
            hasher.update(data)
            if extra is not None:
                extra.update(data)  # type: ignore[attr-defined]

        return write

    async def write(self, data: Buffer, extra: object | None = None) -> None:
        """Write and hash ``data`` (and feed it to ``extra``, a hashlib object, if given)."""
        await self.area.offload(self._write_fn(data, extra))
        self.offset += len(data)  # type: ignore[arg-type]

    def start_write(self, data: Buffer, extra: object | None = None) -> asyncio.Future[None]:
        """Like ``write`` but returns at once; ``finish_write`` must follow before the next.

        Lets the caller receive the next piece while this one is written and hashed.
        """
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.area.executor, self._write_fn(data, extra))

    async def finish_write(self, pending: asyncio.Future[None], length: int) -> None:
        """Wait for a ``start_write``; the piece counts (offset moves) only once written.

        Shielded: a cancelled caller still waits (in its cleanup) for the thread to
        finish before the file is flushed or closed.
        """
        await asyncio.shield(pending)
        self.offset += length

    async def flush(self) -> None:
        """Make everything written so far durable (before the offset is committed)."""
        assert self._fh is not None
        fh, fsync = self._fh, self.area.fsync

        def sync() -> None:
            fh.flush()  # type: ignore[attr-defined]
            if fsync:
                # fdatasync: the data and the file size, not the mtime (one disk write less).
                os.fdatasync(fh.fileno())  # type: ignore[attr-defined]

        await self.area.offload(sync)

    def adopt_hash(self) -> None:
        """Call once the offset is committed: the written bytes now count."""
        self.area.adopt(self.upload_id, self.snapshot())

    def snapshot(self) -> RunningHash:
        """The hash of everything written so far (call with no write in flight)."""
        assert self._hash is not None
        return RunningHash(self.offset, self._hash.hasher.copy())

    def flush_buffer(self) -> None:
        """Hand Python's write buffer to the OS (cheap: pieces are large and unbuffered)."""
        assert self._fh is not None
        self._fh.flush()  # type: ignore[attr-defined]

    async def sync_data(self) -> None:
        """fdatasync: everything handed to the OS before this call is on disk after it.

        Safe while later pieces are being written: those may or may not be included.
        """
        if self.area.fsync:
            assert self._fh is not None
            await self.area.offload(os.fdatasync, self._fh.fileno())  # type: ignore[attr-defined]

    async def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            await self.area.offload(fh.close)  # type: ignore[attr-defined]
