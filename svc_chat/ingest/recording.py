"""A live stream's recording, handed to the VOD pipeline when the stream ends.

While a publisher is on air, the live ladder's ffmpeg also copies the publisher's own
encode, untouched (``-c copy``: no second encode, no quality loss), into
``recordings/{stream_id}/part_NNN.ts``; a publisher that comes back within the grace
period writes the next part. MPEG-TS because a part cut short (ffmpeg killed) is still
readable up to its last packet, where an unfinished MP4 has no index.

When the stream has ended, :meth:`Recorder.finish` joins the parts (ffmpeg's concat
demuxer, which shifts each part's timestamps to follow the previous one) into
``recordings/{stream_id}/recording.mp4`` (``+faststart``): without re-encoding when
every part has the same video size and codec, re-encoded to the first part's size when
they differ (:func:`reencode_command` says why). Then, in ONE transaction, it stores the
video id on the stream (``live_streams.recording_video_id``) and queues
``streams.recordings`` (:class:`~reels.v1.events_pb2.StreamRecorded`) in the outbox.
svc_upload consumes that event and makes the recording a video of the creator
(``video.uploaded`` -> transcoded -> published -> in the feed), like any upload. The
event hands the ``recording.mp4`` object over to svc_upload, which moves it to the
video's original; the parts are deleted here once the event is queued.

A stream that was published but left nothing usable (a publish of about a second: its
part holds audio only, no decodable picture; every part empty; ffmpeg cannot join them)
is handed over all the same, with ``failure_reason`` set and no ``recording_key``:
svc_upload makes it a FAILED video with that reason, which the creator sees. A stream
never published (no part at all) has no recording and no video.

Idempotent and safe across instances: the video id is derived from the stream id
(UUIDv5 in :data:`RECORDING_NAMESPACE`), the UPDATE only fills a NULL
``recording_video_id`` (one instance wins; the others write nothing), and the MP4 is
written under a temporary name and renamed. :meth:`Recorder.sweep` (at ingest start)
finishes the recordings of streams that ended while no instance could (a crash during
the grace period or the remux).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2
from sqlalchemy import update

from reels import topics
from reels.events import inject_trace_headers, new_event_id
from reels.media.ffmpeg_run import run
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
"""Limit of a join without re-encoding (it only copies bytes)."""
REENCODE_SPEED_FLOOR = 0.5
"""A re-encoding join may take up to the recording's duration / this (and at least
:data:`REMUX_TIMEOUT_S`): libx264 veryfast runs many times faster than real time at live
sizes, so only a stuck ffmpeg hits it."""
PROBE_TIMEOUT_S = 30.0
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


@dataclass(frozen=True)
class PartInfo:
    """What ffprobe says about one recording part: its first video stream (None: the
    part has no video with a picture size, e.g. a publish cut off before its first
    keyframe, or an unreadable part) and its first audio stream."""

    path: Path
    video: tuple[str, int, int, str, str] | None
    """(codec, width, height, pixel format, sample aspect ratio)."""
    audio: tuple[str, str, int] | None
    """(codec, sample rate, channels)."""
    duration_s: float

    @property
    def display_size(self) -> tuple[int, int]:
        """Width x height as shown (coded size x sample aspect ratio), rounded down to
        even numbers (H.264 4:2:0 needs them)."""
        assert self.video is not None
        _, width, height, _, sar = self.video
        num, _, den = sar.partition(":")
        if num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0:
            width = round(width * int(num) / int(den))
        return max(2, width - width % 2), max(2, height - height % 2)


def probe_command(ffprobe: str, part: Path) -> list[str]:
    return [
        ffprobe, "-hide_banner", "-loglevel", "error",
        "-show_entries",
        "format=duration:stream=codec_type,codec_name,width,height,pix_fmt,"
        "sample_aspect_ratio,sample_rate,channels",
        "-of", "json", str(part),
    ]  # fmt: skip


def part_info(part: Path, ffprobe_json: bytes | None) -> PartInfo:
    """A :class:`PartInfo` from ffprobe's JSON (None: ffprobe could not read the part)."""
    try:
        data = json.loads(ffprobe_json) if ffprobe_json else {}
    except ValueError:
        data = {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video = audio = None
    for stream in streams:
        kind = stream.get("codec_type")
        if kind == "video" and video is None:
            width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
            if width > 0 and height > 0:
                video = (
                    str(stream.get("codec_name") or ""),
                    width,
                    height,
                    str(stream.get("pix_fmt") or ""),
                    str(stream.get("sample_aspect_ratio") or ""),
                )
        elif kind == "audio" and audio is None:
            audio = (
                str(stream.get("codec_name") or ""),
                str(stream.get("sample_rate") or ""),
                int(stream.get("channels") or 0),
            )
    try:
        duration = float((data.get("format") or {}).get("duration") or 0.0)
    except (TypeError, ValueError):
        duration = 0.0
    return PartInfo(part, video, audio, duration)


def can_copy(parts: list[PartInfo]) -> bool:
    """Whether the parts can be joined by copying: the same video codec, size, pixel
    format and aspect ratio, and the same audio (or none), in every part."""
    return len({(p.video, p.audio) for p in parts}) == 1


def concat_command(ffmpeg: str, list_file: Path, out: Path) -> list[str]:
    """Join the parts listed in ``list_file`` (concat demuxer syntax) into ``out`` (MP4)
    without re-encoding; ``-f mp4`` because ``out`` is a temporary name."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_file),
        "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


def reencode_command(ffmpeg: str, list_file: Path, out: Path, width: int, height: int) -> list[str]:
    """Join the parts listed in ``list_file`` into ``out`` (MP4), re-encoded to
    ``width`` x ``height`` (the first part's size).

    Used when the parts differ (a publisher that came back within the grace period at
    another resolution or with other encoder settings). An MP4 video track has ONE
    codec configuration (the ``avcC`` of its sample entry: profile, size): joining
    such parts with ``-c copy`` gives a file whose later pictures contradict its own
    header, which players show broken and the transcoder fails for decoder errors.
    Decoding every part and encoding one stream is the only way to one valid track; the
    concat demuxer still lines the parts up, and the decoder follows the new SPS of a
    part. Each picture is scaled to fit the first part's size and padded (letterbox,
    square pixels), so nothing is cropped or stretched. libx264 ``veryfast``/CRF 20 and
    AAC: this file is the video's original, which the VOD ladder encodes again, so it is
    kept close to the source quality at a cost well under real time. Rare (the
    publisher changed its output), so the common case keeps the lossless, cheap copy.
    """
    scale = (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1"
    )
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_file),
        "-map", "0:v:0", "-map", "0:a:0?", "-vf", scale,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "160k",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def recorded_event(
    stream: LiveStream,
    video_id: str,
    key: str,
    size: int,
    event_id: uuid.UUID,
    failure_reason: str = "",
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
        failure_reason=failure_reason,
    )


class RemuxFailed(Exception):
    """No recording can be made of the parts; the message says why, for the creator."""


class Recorder:
    """See the module docstring."""

    def __init__(
        self, ctx: Context, store: LocalObjectStore, ffmpeg: str, ffprobe: str | None = None
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe or ctx.settings.platform.ffprobe
        self._busy: dict[str, asyncio.Task[str | None]] = {}

    def directory(self, stream_id: str) -> Path:
        return self.store.path(recording_prefix(stream_id))

    def next_part(self, stream_id: str) -> Path:
        directory = self.directory(stream_id)
        directory.mkdir(parents=True, exist_ok=True)
        return next_part(directory)

    async def finish(self, stream_id: str) -> str | None:
        """Hand an ENDED stream's recording to the VOD pipeline; the video id, or None
        when there is nothing to hand over (never published, still LIVE, or ffmpeg could
        not run: logged, retried by the next sweep). Parts that make no recording are
        handed over as a failure (the video id is returned). One run per stream on this
        instance at a time; a second call waits for the first."""
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
        found = parts_in(directory)
        if not found:
            log.info("stream %s has no recording (never published)", stream_id)
            return None
        parts = [p for p in found if p.stat().st_size > 0]
        key, size, failure = recording_key(stream_id), 0, ""
        try:
            if not parts:
                raise RemuxFailed("the stream sent no media")
            size = await self._remux(directory, parts)
        except RemuxFailed as exc:
            key, failure = "", str(exc)
            log.warning("recording of stream %s could not be made: %s", stream_id, failure)
        except (OSError, TimeoutError) as exc:
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
                    recorded_event(row, video_id, key, size, event_id, failure),
                    event_id,
                )
        log.info(
            "recording handed to the VOD pipeline",
            extra={
                "fields": {
                    "stream_id": stream_id,
                    "video_id": video_id,
                    "parts": len(found),
                    "size_bytes": size,
                    "failure_reason": failure,
                    "queued": row is not None,
                }
            },
        )
        await self._drop_parts(stream_id)
        return video_id

    async def _probe(self, part: Path) -> PartInfo:
        """ffprobe of one part (it reads the part's first packets and its end, not the
        whole part). A part ffprobe cannot read counts as one without video; ffprobe
        failing to run (OSError, TimeoutError) raises."""
        done = await run(
            probe_command(self.ffprobe, part), capture_stdout=True, timeout_s=PROBE_TIMEOUT_S
        )
        return part_info(part, done.stdout if done.returncode == 0 else None)

    async def _remux(self, directory: Path, parts: list[Path]) -> int:
        """Join ``parts`` into ``recording.mp4`` (written under a temporary name, then
        renamed); its size in bytes. Parts without video are left out (a publish too
        short for a picture); :class:`RemuxFailed` when none has any, or ffmpeg fails."""
        infos = [await self._probe(p) for p in parts]
        usable = [i for i in infos if i.video is not None]
        if not usable:
            raise RemuxFailed("the stream sent no decodable video")
        if len(usable) < len(infos):
            log.info(
                "recording parts without video left out: %s",
                ", ".join(i.path.name for i in infos if i.video is None),
            )
        token = uuid.uuid4().hex[:8]
        list_file = directory / f".concat-{token}.txt"
        tmp = directory / f".recording-{token}.mp4"
        list_file.write_text("".join(f"file '{i.path.name}'\n" for i in usable))
        if can_copy(usable):
            argv, timeout = concat_command(self.ffmpeg, list_file, tmp), REMUX_TIMEOUT_S
        else:
            width, height = usable[0].display_size
            log.info(
                "recording parts differ (%s): re-encoding to %dx%d",
                "; ".join(f"{i.path.name} {i.video} {i.audio}" for i in usable),
                width,
                height,
            )
            argv = reencode_command(self.ffmpeg, list_file, tmp, width, height)
            total_s = sum(i.duration_s for i in usable)
            timeout = max(REMUX_TIMEOUT_S, total_s / REENCODE_SPEED_FLOOR)
        try:
            done = await run(argv, timeout_s=timeout)
            if done.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
                detail = done.stderr_tail.strip()[-300:] or "no output"
                raise RemuxFailed(f"its parts could not be joined: {detail}")
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
