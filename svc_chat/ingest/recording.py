"""A live stream's recording, handed to the VOD pipeline when the stream ends.

While a publisher is on air, the live ladder's ffmpeg also copies the publisher's own
encode, untouched (``-c copy``: no second encode, no quality loss), into
``recordings/{stream_id}/part_NNN.ts``; a publisher that comes back within the grace
period writes the next part. MPEG-TS because a part cut short (ffmpeg killed) is still
readable up to its last packet, where an unfinished MP4 has no index.

When the stream has ended, :meth:`Recorder.finish` joins the parts without re-encoding
(ffmpeg's concat demuxer, which shifts each part's timestamps to follow the previous
one) into ``recordings/{stream_id}/recording.mp4`` (``+faststart``), then, in ONE
transaction, stores the video id on the stream (``live_streams.recording_video_id``)
and queues ``streams.recordings`` (:class:`~reels.v1.events_pb2.StreamRecorded`) in the
outbox. svc_upload consumes that event and makes the recording a video of the creator
(``video.uploaded`` -> transcoded -> published -> in the feed), like any upload. The
event hands the ``recording.mp4`` object over to svc_upload, which moves it to the
video's original; the parts are deleted here once the event is queued.

Idempotent and safe across instances: the video id is derived from the stream id
(UUIDv5 in :data:`RECORDING_NAMESPACE`), the UPDATE only fills a NULL
``recording_video_id`` (one instance wins; the others write nothing), and the MP4 is
written under a temporary name and renamed. :meth:`Recorder.sweep` (at ingest start)
finishes the recordings of streams that ended while no instance could (a crash during
the grace period or the remux).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import datetime
from pathlib import Path

from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2
from sqlalchemy import update

from reels import topics
from reels.events import inject_trace_headers, new_event_id
from reels.outbox import enqueue_message
from reels.storage import LocalObjectStore
from svc_chat.models import LiveStream
from svc_chat.parts import Context
from svc_chat.streams.lifecycle import State

log = logging.getLogger(__name__)

RECORDINGS_ROOT = "recordings"
RECORDING_NAME = "recording.mp4"
PART_PATTERN = "part_{:03d}.ts"
PART_RE = re.compile(r"^part_(\d{3,})\.ts$")
RECORDING_NAMESPACE = uuid.UUID("6b1f9f0e-4c1e-5d8a-9a51-2f7c3e0b7a10")
"""UUIDv5 namespace of recording video ids (RFC 9562 section 5.5)."""
REMUX_TIMEOUT_S = 600.0
PRODUCER = "svc_chat"


def recording_video_id(stream_id: str) -> str:
    """The video id a stream's recording becomes: the same for every instance and retry."""
    return str(uuid.uuid5(RECORDING_NAMESPACE, f"stream-recording:{stream_id}"))


def recording_prefix(stream_id: str) -> str:
    return f"{RECORDINGS_ROOT}/{stream_id}"


def recording_key(stream_id: str) -> str:
    return f"{recording_prefix(stream_id)}/{RECORDING_NAME}"


def parts_in(directory: Path) -> list[Path]:
    """The recording parts in ``directory``, in publishing order."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := PART_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def next_part(directory: Path) -> Path:
    """Where the next publish of this stream records (after every existing part)."""
    taken = [int(m.group(1)) for p in parts_in(directory) if (m := PART_RE.match(p.name))]
    return directory / PART_PATTERN.format(max(taken, default=-1) + 1)


def concat_command(ffmpeg: str, list_file: Path, out: Path) -> list[str]:
    """Join the parts listed in ``list_file`` (concat demuxer syntax) into ``out`` (MP4)
    without re-encoding; ``-f mp4`` because ``out`` is a temporary name."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_file),
        "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def recorded_event(
    stream: LiveStream, video_id: str, key: str, size: int, event_id: uuid.UUID
) -> events_pb2.StreamRecorded:
    occurred = timestamp_pb2.Timestamp()
    occurred.GetCurrentTime()
    return events_pb2.StreamRecorded(
        meta=events_pb2.EventMeta(
            event_id=str(event_id),
            occurred_at=occurred,
            trace_context=inject_trace_headers({}),
            producer=PRODUCER,
        ),
        stream_id=stream.stream_id,
        creator_id=stream.creator_id,
        video_id=video_id,
        recording_key=key,
        size_bytes=size,
        title=stream.title,
        description=stream.description,
        tags=list(stream.tags),
        started_at=_ts(stream.started_at),
        ended_at=_ts(stream.ended_at),
    )


class RemuxFailed(Exception):
    """ffmpeg could not join the parts (the message is its stderr)."""


class Recorder:
    """See the module docstring."""

    def __init__(self, ctx: Context, store: LocalObjectStore, ffmpeg: str) -> None:
        self.ctx = ctx
        self.store = store
        self.ffmpeg = ffmpeg
        self._busy: dict[str, asyncio.Task[str | None]] = {}

    def directory(self, stream_id: str) -> Path:
        return self.store.path(recording_prefix(stream_id))

    def next_part(self, stream_id: str) -> Path:
        directory = self.directory(stream_id)
        directory.mkdir(parents=True, exist_ok=True)
        return next_part(directory)

    async def finish(self, stream_id: str) -> str | None:
        """Hand an ENDED stream's recording to the VOD pipeline; the video id, or None
        when there is nothing to hand over (never published, still LIVE, already
        handed over, or the parts could not be joined: logged). One run per stream on
        this instance at a time; a second call waits for the first."""
        running = self._busy.get(stream_id)
        if running is None:
            running = self._busy[stream_id] = asyncio.create_task(self._finish(stream_id))
            running.add_done_callback(lambda _t: self._busy.pop(stream_id, None))
        return await asyncio.shield(running)

    async def _finish(self, stream_id: str) -> str | None:
        stream = await self.ctx.streams.store.get(stream_id)
        if stream is None or stream.state != State.ENDED.name:
            return None
        if stream.recording_video_id:
            await self._drop_parts(stream_id)
            return stream.recording_video_id
        directory = self.directory(stream_id)
        parts = [p for p in parts_in(directory) if p.stat().st_size > 0]
        if not parts:
            log.info("stream %s has no recording (never published)", stream_id)
            return None
        key = recording_key(stream_id)
        try:
            size = await self._remux(directory, parts)
        except (RemuxFailed, OSError, TimeoutError) as exc:
            log.error("recording of stream %s could not be joined: %s", stream_id, exc)
            return None
        video_id = recording_video_id(stream_id)
        async with self.ctx.sessionmaker() as session, session.begin():
            row = await session.scalar(
                update(LiveStream)
                .where(LiveStream.stream_id == stream_id, LiveStream.recording_video_id.is_(None))
                .values(recording_video_id=video_id)
                .returning(LiveStream)
                .execution_options(populate_existing=True)
            )
            if row is not None:
                event_id = new_event_id()
                await enqueue_message(
                    session,
                    topics.STREAMS_RECORDINGS,
                    recorded_event(row, video_id, key, size, event_id),
                    event_id,
                )
        log.info(
            "recording handed to the VOD pipeline",
            extra={
                "fields": {
                    "stream_id": stream_id,
                    "video_id": video_id,
                    "parts": len(parts),
                    "size_bytes": size,
                    "queued": row is not None,
                }
            },
        )
        await self._drop_parts(stream_id)
        return video_id

    async def _remux(self, directory: Path, parts: list[Path]) -> int:
        """Join ``parts`` into ``recording.mp4`` (written under a temporary name, then
        renamed); its size in bytes."""
        token = uuid.uuid4().hex[:8]
        list_file = directory / f".concat-{token}.txt"
        tmp = directory / f".recording-{token}.mp4"
        list_file.write_text("".join(f"file '{p.name}'\n" for p in parts))
        try:
            proc = await asyncio.create_subprocess_exec(
                *concat_command(self.ffmpeg, list_file, tmp),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), REMUX_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
                raise RemuxFailed(err.decode(errors="replace").strip()[-500:] or "no output")
            final = directory / RECORDING_NAME
            tmp.replace(final)
            return final.stat().st_size
        finally:
            list_file.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)

    async def _drop_parts(self, stream_id: str) -> None:
        for part in parts_in(self.directory(stream_id)):
            part.unlink(missing_ok=True)

    async def sweep(self) -> None:
        """Finish the recordings left behind: every ``recordings/{id}/`` with parts whose
        stream has ENDED and has no recording video yet."""
        root = self.store.path(RECORDINGS_ROOT)
        if not root.is_dir():
            return
        for directory in sorted(root.iterdir()):
            if directory.is_dir() and parts_in(directory):
                try:
                    await self.finish(directory.name)
                except Exception:  # noqa: BLE001 - one stream must not stop the sweep
                    log.exception("could not finish the recording of %s", directory.name)
