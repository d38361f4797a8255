"""The media pipeline a transcode job runs: probe → normalise → ladder → one ffmpeg →
playlists → artifacts.

The normalisation stage (svc_transcode/normalise.py) decides what the source really is
(display size, scan type, colour, audio track) and the ladder and filter graph are built
from its facts only.

It only reads `src` and only writes under `work_dir`; publishing (an atomic move to the
object store) and job state belong to the caller. Failures come in exactly two kinds so
the caller can route them without parsing messages: `UnusableMedia` (the input; dead-
letter it and tell the uploader) and `TranscodeError` (the machine; retry with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reels.media.ffmpeg_run import (
    TranscodeError,
    UnusableMedia,
    damage_verdict,
    ffmpeg_failure,
    run,
)
from reels.media.probe import ProbeLimits, ProbeResult, probe
from svc_transcode import artifacts, hls, normalise
from svc_transcode.ladder import DEFAULT_FPS_CAP, Rung, build_ladder
from svc_transcode.progress import ProgressCallback, ProgressReporter, follow_ffmpeg_progress

log = logging.getLogger(__name__)

__all__ = [
    "Rendition",
    "TranscodeError",
    "TranscodeResult",
    "UnusableMedia",
    "transcode",
]

PROBE_END, ENCODE_END, ARTIFACTS_END = 2.0, 90.0, 99.0

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
    facts: normalise.SourceFacts | None = None  # what normalisation decided


def classify_ffmpeg_failure(returncode: int, stderr_tail: str, what: str) -> Exception:
    """UnusableMedia when the input is corrupt, a transient TranscodeError when the machine
    is to blame, a permanent one when ffmpeg deterministically refuses the input
    (reels.media.ffmpeg_run.ffmpeg_failure has the rules)."""
    return ffmpeg_failure(returncode, stderr_tail, what)


async def _encode_ladder(
    src: Path,
    work_dir: Path,
    rungs: list[Rung],
    source: ProbeResult,
    facts: normalise.SourceFacts,
    plan: normalise.Plan,
    reporter: ProgressReporter,
    preset: str,
) -> None:
    for rung in rungs:
        await asyncio.to_thread((work_dir / rung.name).mkdir, parents=True, exist_ok=True)
    command = hls.build_ladder_command(
        src,
        work_dir,
        rungs,
        has_audio=plan.audio_map is not None,
        source_fps=facts.fps,
        preset=preset,
        video_map=plan.video_map,
        pre_filters=plan.pre_filters,
        colour_filters=plan.colour_filters,
        audio_map=plan.audio_map or "0:a:0",
        output_args=plan.output_args,
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
    damaged = damage_verdict(done.input_errors, source.duration_s * facts.fps)
    if damaged is not None:
        raise damaged
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
        facts = await normalise.normalise_file(src, source)
        zscale = await normalise.filter_available("zscale")
    except (TimeoutError, OSError) as exc:  # ffprobe hung or could not start: retry later
        raise TranscodeError(f"probing failed: {exc!r}", transient=True) from exc
    if not zscale and (facts.colour.hdr or facts.colour.wide_gamut):
        log.warning("ffmpeg has no zscale: %s is converted to SDR without tone mapping", src)
    log.info("source %s: %s", src.name, normalise.describe(facts))
    await reporter.report("probe", PROBE_END, force=True)
    timings["probe"] = time.monotonic() - t0

    rungs = build_ladder(facts.width, facts.height, facts.fps, fps_cap=fps_cap)
    plan = normalise.plan(facts, (rungs[0].width, rungs[0].height), zscale=zscale)
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)

    thumb_task: asyncio.Task[None] | None = None

    def start_thumbnail() -> asyncio.Task[None]:
        return asyncio.create_task(
            artifacts.make_thumbnail(
                src,
                work_dir / artifacts.THUMBNAIL_NAME,
                duration_s=source.duration_s,
                width=facts.width,
                height=facts.height,
                pre_filters=plan.thumbnail_filters,
                video_map=plan.video_map,
            )
        )

    try:
        if artifacts_concurrently:
            thumb_task = start_thumbnail()
        t1 = time.monotonic()
        await _encode_ladder(src, work_dir, rungs, source, facts, plan, reporter, preset)
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
            low, work_dir, duration_s=source.duration_s, width=facts.width, height=facts.height
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
        width=facts.width,
        height=facts.height,
        rotation=source.rotation,
        has_audio=facts.has_audio,
        source=source,
        thumbnail=artifacts.THUMBNAIL_NAME,
        preview=artifacts.PREVIEW_NAME,
        storyboard=artifacts.STORYBOARD_IMAGE,
        storyboard_index=artifacts.STORYBOARD_JSON,
        storyboard_vtt=artifacts.STORYBOARD_VTT,
        timings_s=timings,
        facts=facts,
    )
