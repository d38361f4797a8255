"""LocalObjectStore on a real temp directory: streaming, ranges, atomicity, key safety."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reels.config import PlatformSettings
from reels.storage import LocalObjectStore, ObjectStore, open_object_store

MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def all_files(root: Path) -> list[str]:
    """Every file on disk under root, hidden ones included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


def test_local_store_satisfies_the_protocol(store: LocalObjectStore) -> None:
    assert isinstance(store, ObjectStore)


async def test_stream_put_of_multi_mb_body_round_trips_exactly(store: LocalObjectStore) -> None:
    body = os.urandom(5 * MB + 12345)
    size = await store.put_stream("originals/v1/source.mp4", chunked(body, 256 * 1024))
    assert size == len(body)
    assert await store.size("originals/v1/source.mp4") == len(body)
    assert await store.exists("originals/v1/source.mp4")
    assert await store.get_bytes("originals/v1/source.mp4") == body
    assert all_files(store.root) == ["originals/v1/source.mp4"]


async def test_ranged_reads_return_the_exact_bytes(store: LocalObjectStore) -> None:
    body = os.urandom(3 * MB + 7)
    await store.put_bytes("seg/a.ts", body)

    async def read(start: int, end: int | None, chunk: int = 64 * 1024) -> bytes:
        return b"".join(
            [c async for c in store.open_range("seg/a.ts", start, end, chunk_size=chunk)]
        )

    for start, end in [(0, 1), (0, MB), (MB - 3, 2 * MB + 5), (len(body) - 10, len(body))]:
        assert await read(start, end) == body[start:end]
    assert await read(2 * MB, None) == body[2 * MB :]
    assert await read(len(body) - 5, len(body) + 100) == body[-5:]
    assert await read(10, 10) == b""
    chunks = [c async for c in store.open_range("seg/a.ts", 0, MB, chunk_size=1000)]
    assert max(len(c) for c in chunks) == 1000
    with pytest.raises(ValueError):
        await read(10, 5)
    with pytest.raises(FileNotFoundError):
        await store.size("seg/missing.ts")


async def test_no_temp_file_is_visible_during_or_after_a_stream_put(
    store: LocalObjectStore,
) -> None:
    seen_during: list[list[str]] = []

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * MB
            seen_during.append(await store.list(""))
            assert not await store.exists("up/big.bin")

    await store.put_stream("up/big.bin", slow_body())
    assert seen_during == [[]] * 4
    assert await store.list("") == ["up/big.bin"]
    assert all_files(store.root) == ["up/big.bin"]


async def test_failed_stream_leaves_nothing_behind_and_keeps_the_old_object(
    store: LocalObjectStore,
) -> None:
    await store.put_bytes("doc.bin", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new" * 1000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream("doc.bin", broken())
    assert await store.get_bytes("doc.bin") == b"old"
    assert all_files(store.root) == ["doc.bin"]


async def test_publish_prefix_swaps_a_whole_folder_at_once(store: LocalObjectStore) -> None:
    await store.put_bytes("hls/v1/master.m3u8", b"old master")
    await store.put_bytes("hls/v1/720p/seg0.ts", b"old seg")

    staging = store.staging_prefix("hls/v1")
    await store.put_bytes(f"{staging}/master.m3u8", b"new master")
    await store.put_bytes(f"{staging}/360p/seg0.ts", b"new 360")
    await store.put_bytes(f"{staging}/360p/seg1.ts", b"new 360 b")
    # Staged files are not visible under the final prefix before publishing.
    assert await store.list("hls/v1") == ["hls/v1/720p/seg0.ts", "hls/v1/master.m3u8"]

    assert await store.publish_prefix(staging, "hls/v1") == 3
    assert await store.list("hls/v1") == [
        "hls/v1/360p/seg0.ts",
        "hls/v1/360p/seg1.ts",
        "hls/v1/master.m3u8",
    ]
    assert await store.get_bytes("hls/v1/master.m3u8") == b"new master"
    # The old set is gone entirely (no stale 720p), and so is the staging folder.
    assert all_files(store.root) == [
        "hls/v1/360p/seg0.ts",
        "hls/v1/360p/seg1.ts",
        "hls/v1/master.m3u8",
    ]
    with pytest.raises(FileNotFoundError):
        await store.publish_prefix(staging, "hls/v1")


async def test_readers_never_see_a_half_published_folder(store: LocalObjectStore) -> None:
    files = [f"s{i}.ts" for i in range(20)]
    for f in files:
        await store.put_bytes(f"hls/v2/{f}", b"A")
    stop = asyncio.Event()
    snapshots: list[tuple[int, set[bytes]]] = []

    def read_folder(root: Path) -> tuple[int, set[bytes]] | None:
        # Resolve the folder once (like a player that fetched the master playlist)
        # and read every file relative to that one directory.
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = os.listdir(dir_fd)
            contents = set()
            for name in names:
                fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                with os.fdopen(fd, "rb") as fh:
                    contents.add(fh.read())
            mine = os.fstat(dir_fd)
            try:
                current = os.stat(root).st_ino
            except FileNotFoundError:
                current = -1
            if mine.st_nlink == 0 or mine.st_ino != current:
                # The generation this reader resolved was swapped out (and is being
                # removed) while it read: a superseded folder, not a half-published one.
                return None
            return len(names), contents
        finally:
            os.close(dir_fd)

    def reader() -> None:
        root = store.root / "hls" / "v2"
        while not stop.is_set():
            try:
                snapshot = read_folder(root)
            except FileNotFoundError:
                continue  # between the two renames the folder is briefly absent
            if snapshot is not None:
                snapshots.append(snapshot)

    task = asyncio.create_task(asyncio.to_thread(reader))
    for gen in (b"B", b"C", b"D"):
        staging = store.staging_prefix("hls/v2")
        for f in files:
            await store.put_bytes(f"{staging}/{f}", gen)
        await store.publish_prefix(staging, "hls/v2")
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert snapshots, "the reader never observed the folder"
    # Every complete read saw all 20 files of exactly one generation.
    for count, contents in snapshots:
        assert count == 20
        assert len(contents) == 1
    assert await store.get_bytes("hls/v2/s0.ts") == b"D"


@pytest.mark.parametrize(
    "bad",
    ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "", "a/./b", "a\\b", "a\x00b", ".part-x"],
)
async def test_bad_keys_are_rejected(store: LocalObjectStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await store.put_bytes(bad, b"x")
    with pytest.raises(ValueError):
        await store.exists(bad)


async def test_delete_and_delete_prefix(store: LocalObjectStore) -> None:
    for k in ("v/1/a", "v/1/b", "v/2/a", "w"):
        await store.put_bytes(k, b"x")
    assert await store.delete("w") is True
    assert await store.delete("w") is False
    assert await store.delete_prefix("v/1") == 2
    assert await store.list("") == ["v/2/a"]
    assert await store.delete_prefix("v/1") == 0
    with pytest.raises(ValueError):
        await store.delete_prefix("")


async def test_rename_moves_one_object(store: LocalObjectStore) -> None:
    await store.put_bytes("tmp/upload-1", b"payload")
    await store.rename("tmp/upload-1", "originals/v9/source.mp4")
    assert not await store.exists("tmp/upload-1")
    assert await store.get_bytes("originals/v9/source.mp4") == b"payload"


def test_factory_picks_local_by_url_and_refuses_s3_clearly(tmp_path: Path) -> None:
    store = open_object_store((tmp_path / "o").as_uri())
    assert isinstance(store, LocalObjectStore) and store.root == (tmp_path / "o").resolve()
    configured = PlatformSettings.from_env({"REELS_STORAGE_URL": (tmp_path / "env").as_uri()})
    env_store = open_object_store(configured.storage_url)
    assert isinstance(env_store, LocalObjectStore)
    assert env_store.root == (tmp_path / "env").resolve()
    default_store = open_object_store(None)  # the process's PlatformSettings
    assert isinstance(default_store, LocalObjectStore)
    with pytest.raises(NotImplementedError, match="s3"):
        open_object_store("s3://bucket/prefix")
    with pytest.raises(ValueError):
        open_object_store("ftp://x/y")
