"""Getting a job's files in and out of object storage, with no partial output ever visible.

Outputs are staged under ``videos/<video_id>.tmp-<job_id>/`` and then moved to
``videos/<video_id>/`` in one ``publish_prefix`` (a single rename locally), so a
player or the origin sees either nothing or the complete, playable set. The staging
prefix is named after the job, so the next worker redoing a killed job finds (and
clears) what the dead one left behind.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from reels.storage import ObjectStore
from svc_transcode.pipeline import TranscodeResult

VIDEOS_PREFIX = "videos"
READ_CHUNK = 1024 * 1024


class StorageError(Exception):
    """Object storage failed or lost something; transient (retry with backoff)."""


def final_prefix(video_id: str) -> str:
    return f"{VIDEOS_PREFIX}/{video_id}"


def staging_prefix(video_id: str, job_id: str) -> str:
    return f"{VIDEOS_PREFIX}/{video_id}.tmp-{job_id}"


@dataclass(frozen=True)
class PublishedVideo:
    """Where the published files of a transcode result live in the store."""

    video_id: str
    result: TranscodeResult

    @property
    def prefix(self) -> str:
        return final_prefix(self.video_id)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}"

    @property
    def master_playlist_key(self) -> str:
        return self.key(self.result.master_playlist)

    @property
    def thumbnail_key(self) -> str:
        return self.key(self.result.thumbnail)

    @property
    def preview_key(self) -> str:
        return self.key(self.result.preview)

    @property
    def storyboard_key(self) -> str:
        """The WebVTT track: what a player loads; it points into the sprite image."""
        return self.key(self.result.storyboard_vtt)


async def download(store: ObjectStore, key: str, dest: Path) -> int:
    """Copy an object to a local file chunk by chunk (the original may be 500 MB)."""
    try:
        return await store.get_file(key, dest)
    except FileNotFoundError as exc:
        raise StorageError(f"the original {key!r} is not in object storage") from exc
    except OSError as exc:
        raise StorageError(f"reading the original {key!r} failed: {exc}") from exc


def _local_files(root: Path) -> list[str]:
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


async def stage(store: ObjectStore, out_dir: Path, prefix: str) -> list[str]:
    """Upload every file of ``out_dir`` under ``prefix`` (cleared first); returns the keys."""
    try:
        await store.delete_prefix(prefix)  # leftovers of a worker killed mid-upload
        relative = await asyncio.to_thread(_local_files, out_dir)
        for rel in relative:
            # The work dir is thrown away after the job: let the store take the files.
            await store.put_file(f"{prefix}/{rel}", out_dir / rel, move=True)
    except OSError as exc:
        raise StorageError(f"staging outputs under {prefix!r} failed: {exc}") from exc
    return [f"{prefix}/{rel}" for rel in relative]


async def publish(store: ObjectStore, staged: list[str], staging: str, final: str) -> int:
    """Check the staged set is complete, then make it appear under ``final`` at once.

    The check guards against anything having touched the staging prefix since we
    wrote it (a cancelled, lease-less worker of the same job cleaning up): a short
    set is never published.
    """
    try:
        present = await store.list(staging)
        if sorted(present) != sorted(staged):
            raise StorageError(
                f"staging prefix {staging!r} changed under us "
                f"({len(present)} objects, {len(staged)} staged); not publishing"
            )
        return await store.publish_prefix(staging, final)
    except OSError as exc:
        raise StorageError(f"publishing {staging!r} to {final!r} failed: {exc}") from exc


async def discard(store: ObjectStore, prefix: str) -> None:
    """Remove a staging prefix; never raises (cleanup must not hide the real outcome)."""
    try:
        await store.delete_prefix(prefix)
    except Exception:  # noqa: BLE001 - best effort; the next attempt clears it anyway
        pass
