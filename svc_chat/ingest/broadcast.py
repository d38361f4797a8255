"""One accepted publisher: its FLV piped into the live ladder's ffmpeg.

ffmpeg starts on the first video message, when the encoder's ``onMetaData`` (sent
right after ``publish`` by ffmpeg, OBS and every common encoder) has told the picture
size and frame rate the ladder is cut from; audio that arrives before is buffered.
Writing waits for ffmpeg's stdin (``drain``), so a slow ladder slows the publisher
through TCP instead of growing a buffer here; time spent waiting on our own ffmpeg is
never taken for a stalled publisher (:attr:`Broadcast.draining`).

A publisher that leaves keeps its ffmpeg: :meth:`Broadcast.pause` leaves the process
running (idle, its stdin open) through the grace period, and a publisher back on the
same instance continues into the same process (:meth:`Broadcast.resume`) with its
timestamps moved on to follow the last ones written. The ladder then has no
discontinuity at all: the same encoder, the same playlists, segment numbers and
timestamps that keep counting (ffmpeg's own ``append_list`` resume numbers
discontinuities wrongly, against RFC 8216 section 6.2.2; it is only used when the
publisher comes back on another instance or after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from svc_chat.ingest import flv
from svc_chat.ingest.command import live_hls_command
from svc_chat.ingest.ladder import live_ladder, output_fps
from svc_chat.ingest.rtmp import Refused
from svc_chat.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

STOP_WAIT_S = 5.0
"""How long ffmpeg gets to finish its last segment after stdin closes (s)."""
REJOIN_GAP_MS = 40
"""A returning publisher's first message is placed this long after the last one
written (about a frame at 25-30 fps), so timestamps keep increasing (ms)."""


MIN_SHORT_EDGE = 144
"""The smallest picture (short edge, px) taken: the upload rule (reels.media.probe
ProbeLimits.min_short_edge), so a live stream's recording can become a video."""
PROBE_TIMEOUT_S = 5.0


class NoPictureSize(Refused):
    """Neither onMetaData nor the stream itself says the picture size."""


class Broadcast:
    """See the module docstring. ``accepted_at``/``last_media_at``: ``time.monotonic()``."""

    def __init__(
        self,
        stream_id: str,
        out_dir: Path,
        settings: IngestSettings,
        ffmpeg: str,
        recording: Path | None = None,
        *,
        ffprobe: str = "ffprobe",
        on_started: Callable[[], Awaitable[None]] | None = None,
        next_recording: Callable[[], Path | None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.out_dir = out_dir
        self.recording = recording
        """Where this publish's recording part goes (None: not recorded)."""
        self.ffprobe = ffprobe
        self.on_started = on_started
        """Awaited once the ladder runs (the ingest moves the stream LIVE); raising
        Refused drops the publisher and stops the ladder."""
        self.next_recording = next_recording
        self.went_live = False
        self.size: tuple[int, int] = (0, 0)
        """The picture size the running ladder was cut for."""
        self._restart = False
        self.lease_token = ""
        """This publish's lease token (svc_chat.ingest.lease), set by the ingest."""
        self.settings = settings
        self.ffmpeg = ffmpeg
        self.accepted_at = time.monotonic()
        self.last_media_at = self.accepted_at
        self.meta: dict[str, Any] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._pending: list[bytes] = []
        self._pending_video = 0
        self._saw_audio = False
        self._has_audio = True
        self._stderr: deque[str] = deque(maxlen=20)
        self._stderr_task: asyncio.Task[None] | None = None
        self._last_ts = 0
        """Largest FLV timestamp written to ffmpeg (ms, after the offset)."""
        self._offset = 0
        """Added to the current publisher's timestamps (ms): 0 for the first one."""
        self._rebase = False
        self.draining = False
        """True while a write waits for ffmpeg to read (our slowness, not the publisher's)."""

    def on_meta(self, meta: Any) -> None:
        """``onMetaData``: pyrtmp reads its AMF0 ECMA array as a list of one-entry dicts."""
        if isinstance(meta, dict):
            self.meta = dict(meta)
        elif isinstance(meta, list):
            self.meta = {
                k: v for entry in meta if isinstance(entry, dict) for k, v in entry.items()
            }
        size = (int(self.meta.get("width") or 0), int(self.meta.get("height") or 0))
        if self.proc is not None and all(size) and size != self.size:
            # A returning publisher with another picture size: a new ladder (a ladder
            # is cut for one size; no rung may be above the source) and a new
            # recording part, resumed with a discontinuity.
            self._restart = True

    @property
    def alive(self) -> bool:
        """Whether the ladder can take more input (not started yet, or running)."""
        return self.proc is None or self.proc.returncode is None

    def pause(self) -> None:
        """The publisher left: keep ffmpeg for a publisher that comes back (its next
        timestamps are moved on to follow the last ones written); input that never
        started the ladder (no video yet) is dropped."""
        self._pending.clear()
        self._pending_video = 0
        self._rebase = self.proc is not None

    def resume(self) -> None:
        """A publisher is back on this ladder."""
        self.last_media_at = time.monotonic()

    async def on_media(self, kind: int, timestamp_ms: int, body: bytes) -> None:
        """One RTMP audio or video message, as an FLV tag into ffmpeg."""
        self.last_media_at = time.monotonic()
        if self._restart:
            self._restart = False
            await self.close()
            self.proc = None
            self._rebase, self._offset, self._last_ts = False, 0, 0
            if self.next_recording is not None and self.recording is not None:
                self.recording = self.next_recording()
        if self._rebase:
            self._offset = self._last_ts + REJOIN_GAP_MS - timestamp_ms
            self._rebase = False
        timestamp_ms += self._offset
        self._last_ts = max(self._last_ts, timestamp_ms)
        data = flv.tag(kind, timestamp_ms, body)
        if self.proc is None:
            self._saw_audio = self._saw_audio or kind == flv.AUDIO
            self._pending.append(data)
            if kind != flv.VIDEO:
                return
            self._pending_video += 1
            sized = bool(self.meta.get("width")) and bool(self.meta.get("height"))
            # Without onMetaData the size is probed from the stream, which needs the
            # AVC sequence header AND a first frame (the header alone says 0x0).
            if not sized and self._pending_video < 2:
                return
            await self._start()
            data = flv.header(audio=self._has_audio) + b"".join(self._pending)
            self._pending.clear()
            self._pending_video = 0
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.returncode is not None:
            raise RuntimeError(f"live ffmpeg exited {self.proc.returncode}: {self.stderr_tail}")
        self.proc.stdin.write(data)
        self.draining = True
        try:
            await self.proc.stdin.drain()
        finally:
            self.draining = False
            self.last_media_at = time.monotonic()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    async def _probe(self) -> dict[str, Any]:
        """The first video stream's parameters, read by ffprobe from the FLV buffered so
        far (an encoder that sends no onMetaData: its AVC sequence header says)."""
        data = flv.header(audio=True) + b"".join(self._pending)
        proc = await asyncio.create_subprocess_exec(
            self.ffprobe,
            "-v", "error", "-f", "flv", "-i", "pipe:0", "-select_streams", "v:0",
            "-show_entries", "stream=width,height,avg_frame_rate", "-of", "json",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(data), PROBE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {}
        streams = json.loads(out or b"{}").get("streams") or [{}]
        return dict(streams[0])

    async def _start(self) -> None:
        width = int(self.meta.get("width") or 0)
        height = int(self.meta.get("height") or 0)
        source_fps = float(self.meta.get("framerate") or self.meta.get("videoframerate") or 0)
        if width <= 0 or height <= 0:
            found = await self._probe()
            width, height = int(found.get("width") or 0), int(found.get("height") or 0)
            num, _, den = str(found.get("avg_frame_rate") or "0/1").partition("/")
            with contextlib.suppress(ValueError, ZeroDivisionError):
                source_fps = source_fps or float(num) / float(den or 1)
        if width <= 0 or height <= 0:
            raise NoPictureSize("the stream does not say its picture size (no onMetaData)")
        if min(width, height) < MIN_SHORT_EDGE:
            raise Refused(
                f"the picture is {width}x{height}; its short edge must be at least "
                f"{MIN_SHORT_EDGE} px"
            )
        self.size = (width, height)
        if self.on_started is not None and not self.went_live:
            # LIVE now, before ffmpeg is spawned (slow on a loaded machine): the
            # stream's started_at is when its first picture arrived.
            await self.on_started()
            self.went_live = True
        has_audio = self._has_audio = self._saw_audio or bool(self.meta.get("audiocodecid"))
        s = self.settings
        rungs = live_ladder(width, height, max_height=s.max_height, max_rungs=s.max_rungs)
        resume = (self.out_dir / "master.m3u8").exists()
        argv = live_hls_command(
            self.ffmpeg,
            self.out_dir,
            rungs,
            fps=output_fps(source_fps),
            source_fps=source_fps,
            has_audio=has_audio,
            segment_s=s.segment_s,
            list_size=s.playlist_size,
            preset=s.x264_preset,
            resume=resume,
            recording=self.recording,
        )
        for rung in rungs:
            (self.out_dir / rung.name).mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr_task = asyncio.create_task(self._read_stderr())
        log.info(
            "live ladder started",
            extra={
                "fields": {
                    "stream_id": self.stream_id,
                    "source": f"{width}x{height}@{source_fps:g}",
                    "rungs": [r.name for r in rungs],
                    "resume": resume,
                    "pid": self.proc.pid,
                }
            },
        )

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def close(self) -> None:
        """End of input: ffmpeg finishes its last segment and exits (killed after
        ``STOP_WAIT_S``)."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.wait_closed()
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr_task, 1.0)
        if proc.returncode not in (0, None):
            log.warning(
                "live ffmpeg exited %s for %s: %s",
                proc.returncode,
                self.stream_id,
                self.stderr_tail,
            )
