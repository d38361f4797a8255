"""The media pipeline a transcode job runs: probe → ladder → one ffmpeg → playlists → artifacts.

It only reads `src` and only writes under `work_dir`; publishing (an atomic move to the
object store) and job state belong to the caller. Failures come in exactly two kinds so
the caller can route them without parsing messages: `UnusableMedia` (the input; dead-
letter it and tell the uploader) and `TranscodeError` (the machine; retry with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from reels.media.ffmpeg_run import TranscodeError, UnusableMedia, run
from reels.media.probe import ProbeLimits, ProbeResult, probe
from svc_transcode import artifacts, hls
from svc_transcode.ladder import DEFAULT_FPS_CAP, Rung, build_ladder
from svc_transcode.progress import ProgressCallback, ProgressReporter, follow_ffmpeg_progress

__all__ = [
    "Rendition",
    "TranscodeError",
    "TranscodeResult",
    "UnusableMedia",
    "transcode",
]

PROBE_END, ENCODE_END, ARTIFACTS_END = 2.0, 90.0, 99.0

# stderr lines that blame the input rather than the machine (ffmpeg runs with -xerror).
_INPUT_ERROR = re.compile(
    r"corrupt input packet|error while decoding|invalid data found|partial file|"
    r"invalid nal unit|missing picture|moov atom not found|decode_slice|"
    r"concealing \d+ .* errors|no frame!",
    re.IGNORECASE,
)
_MACHINE_ERROR = re.compile(
    r"no space left|cannot allocate memory|read-only file system|permission denied|"
    r"input/output error|too many open files",
    re.IGNORECASE,
)
# The decoded duration may fall short of the container's by rounding/edit lists; more than
# this means the file ends early (an upload cut off mid-way).
TRUNCATION_TOLERANCE = 0.9


@dataclass(frozen=True)
class Rendition:
    """One HLS variant as the manifest service and the published event need it."""

    name: str
    width: int
    height: int
    playlist: str  # relative to work_dir
    bandwidth: int  # measured peak segment bitrate, bits/s
    average_bandwidth: int  # measured average, bits/s
    video_bitrate: int  # configured target, bits/s
    codecs: str
    frame_rate: float


@dataclass(frozen=True)
class TranscodeResult:
    """Everything the worker publishes about the video; paths are relative to work_dir."""

    master_playlist: str
    renditions: list[Rendition]
    duration_s: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    source: ProbeResult
    thumbnail: str
    preview: str
    storyboard: str
    storyboard_index: str
    storyboard_vtt: str
    timings_s: dict[str, float] = field(default_factory=dict)


def classify_ffmpeg_failure(returncode: int, stderr_tail: str, what: str) -> Exception:
    """UnusableMedia when the input is to blame, otherwise a transient TranscodeError."""
    if (
        returncode > 0
        and _INPUT_ERROR.search(stderr_tail)
        and not _MACHINE_ERROR.search(stderr_tail)
    ):
        return UnusableMedia(
            f"the video is corrupt: decoding failed part-way through ({_last_line(stderr_tail)})"
        )
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    return TranscodeError(f"ffmpeg {how} while {what}", transient=True, stderr_tail=stderr_tail)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"


async def _encode_ladder(
    src: Path,
    work_dir: Path,
    rungs: list[Rung],
    source: ProbeResult,
    reporter: ProgressReporter,
    preset: str,
) -> None:
    for rung in rungs:
        await asyncio.to_thread((work_dir / rung.name).mkdir, parents=True, exist_ok=True)
    command = hls.build_ladder_command(
        src, work_dir, rungs, has_audio=source.has_audio, source_fps=source.fps, preset=preset
    )
    encoded_s = 0.0

    async def on_fraction(fraction: float, is_end: bool) -> None:
        await reporter.report(
            "encode", PROBE_END + (ENCODE_END - PROBE_END) * fraction, force=is_end
        )

    async def follow(stream: asyncio.StreamReader) -> None:
        nonlocal encoded_s
        encoded_s = await follow_ffmpeg_progress(stream, source.duration_s, on_fraction)

    try:
        done = await run(command.argv, stdout_handler=follow)
    except OSError as exc:  # ffmpeg missing, fork failure: the machine, not the file
        raise TranscodeError(f"could not start ffmpeg: {exc}", transient=True) from exc
    if done.returncode != 0:
        raise classify_ffmpeg_failure(done.returncode, done.stderr_tail, "encoding the ladder")
    if encoded_s < source.duration_s * TRUNCATION_TOLERANCE and source.duration_s - encoded_s > 1:
        raise UnusableMedia(
            f"the video is truncated: only {encoded_s:.1f} s of its "
            f"{source.duration_s:.1f} s could be decoded"
        )


async def transcode(
    src: Path,
    work_dir: Path,
    on_progress: ProgressCallback | None = None,
    *,
    preset: str = hls.DEFAULT_PRESET,
    fps_cap: float = DEFAULT_FPS_CAP,
    limits: ProbeLimits | None = None,
    artifacts_concurrently: bool = False,
) -> TranscodeResult:
    """Transcode `src` into an HLS ladder plus thumbnail, preview and storyboard in `work_dir`.

    `artifacts_concurrently` starts the thumbnail (from the source) alongside the ladder
    encode; off by default because on a 2-core worker the ladder already saturates the CPU
    and the overlap measured no faster (bench/bench_transcode.py).
    """
    src, work_dir = Path(src), Path(work_dir)
    reporter = ProgressReporter(on_progress)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    await reporter.report("probe", 0.0, force=True)
    try:
        source = await probe(src, limits)
    except (TimeoutError, OSError) as exc:  # ffprobe hung or could not start: retry later
        raise TranscodeError(f"probing failed: {exc!r}", transient=True) from exc
    await reporter.report("probe", PROBE_END, force=True)
    timings["probe"] = time.monotonic() - t0

    rungs = build_ladder(source.width, source.height, source.fps, fps_cap=fps_cap)
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)

    thumb_task: asyncio.Task[None] | None = None

    def start_thumbnail() -> asyncio.Task[None]:
        return asyncio.create_task(
            artifacts.make_thumbnail(
                src,
                work_dir / artifacts.THUMBNAIL_NAME,
                duration_s=source.duration_s,
                width=source.width,
                height=source.height,
            )
        )

    try:
        if artifacts_concurrently:
            thumb_task = start_thumbnail()
        t1 = time.monotonic()
        await _encode_ladder(src, work_dir, rungs, source, reporter, preset)
        timings["encode"] = time.monotonic() - t1

        t2 = time.monotonic()
        entries = []
        for rung in rungs:
            uri = f"{rung.name}/{hls.PLAYLIST_NAME}"
            stats = await hls.measure_variant(work_dir / uri)
            entries.append((rung, uri, stats))
        master = hls.master_playlist(entries)
        await asyncio.to_thread((work_dir / hls.MASTER_NAME).write_text, master)
        await reporter.report("artifacts", ENCODE_END + 1, force=True)

        low = work_dir / entries[-1][1]  # rungs are highest first; the last is cheapest
        if thumb_task is None:
            thumb_task = start_thumbnail()
        await thumb_task
        await reporter.report("artifacts", ENCODE_END + 3)
        await artifacts.make_preview(
            low, work_dir / artifacts.PREVIEW_NAME, duration_s=source.duration_s
        )
        await reporter.report("artifacts", ENCODE_END + 6)
        await artifacts.make_storyboard(
            low, work_dir, duration_s=source.duration_s, width=source.width, height=source.height
        )
        await reporter.report("artifacts", ARTIFACTS_END, force=True)
        timings["artifacts"] = time.monotonic() - t2
    except OSError as exc:  # writing playlists/artifacts: full disk, lost mount
        raise TranscodeError(f"disk error in {work_dir}: {exc}", transient=True) from exc
    finally:
        if thumb_task is not None and not thumb_task.done():
            thumb_task.cancel()
            with contextlib.suppress(BaseException):
                await thumb_task

    timings["total"] = time.monotonic() - t0
    await reporter.report("done", 100.0, force=True)
    return TranscodeResult(
        master_playlist=hls.MASTER_NAME,
        renditions=[
            Rendition(
                name=rung.name,
                width=rung.width,
                height=rung.height,
                playlist=uri,
                bandwidth=stats.peak_bps,
                average_bandwidth=stats.average_bps,
                video_bitrate=rung.video_bitrate,
                codecs=stats.codecs,
                frame_rate=round(rung.fps, 3),
            )
            for rung, uri, stats in entries
        ],
        duration_s=source.duration_s,
        width=source.width,
        height=source.height,
        rotation=source.rotation,
        has_audio=source.has_audio,
        source=source,
        thumbnail=artifacts.THUMBNAIL_NAME,
        preview=artifacts.PREVIEW_NAME,
        storyboard=artifacts.STORYBOARD_IMAGE,
        storyboard_index=artifacts.STORYBOARD_JSON,
        storyboard_vtt=artifacts.STORYBOARD_VTT,
        timings_s=timings,
    )
