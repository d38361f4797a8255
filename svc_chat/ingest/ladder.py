"""The live ladder: which renditions a live stream gets. Pure, no I/O.

The same rules as the VOD ladder (svc_transcode/ladder.py), written again here because
a service never imports another service's package (DESIGN.md, "Rules of the house"):
rungs are chosen by the picture's SHORT edge (a portrait phone is a 720p source like a
landscape one), never above the source, at most ``max_height`` (720 by default) and
``max_rungs`` of them; a source smaller than the lowest standard rung gets one rung at
its own size. Bitrates are Owncast/Apple-style figures for H.264 at 30 fps; maxrate is
1.06x and bufsize 1.2x the bitrate, as Owncast sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (short edge px, video kbps, audio kbps), highest first.
STANDARD_RUNGS: tuple[tuple[int, int, int], ...] = (
    (1080, 5000, 128),
    (720, 2500, 128),
    (480, 1200, 96),
    (360, 600, 64),
    (240, 300, 64),
)
MAXRATE_FACTOR = 1.06
BUFSIZE_FACTOR = 1.2
FPS_CAP = 30.0
MIN_VIDEO_KBPS = 150


@dataclass(frozen=True)
class LiveRung:
    """One live rendition; ``name`` ("720p") is also its folder under ``live/{id}/``."""

    name: str
    width: int
    height: int
    video_bitrate: int  # bits per second
    maxrate: int
    bufsize: int
    audio_bitrate: int  # bits per second


def _even(value: float) -> int:
    """H.264 4:2:0 needs even dimensions; the nearest even number, at least 2."""
    return max(2, int(round(value / 2.0)) * 2)


def scaled_dims(width: int, height: int, short_edge: int) -> tuple[int, int]:
    """``width``x``height`` scaled to ``short_edge`` on its short side (even, same
    aspect ratio)."""
    src_short, src_long = min(width, height), max(width, height)
    long_edge = _even(src_long * short_edge / src_short)
    short = _even(short_edge)
    return (long_edge, short) if width >= height else (short, long_edge)


def output_fps(source_fps: float, cap: float = FPS_CAP) -> float:
    """The source rate, or divided by an integer to stay under ``cap`` (60 -> 30, 50
    -> 25) so motion stays even; ``cap`` when the source does not say."""
    if source_fps <= 0 or not math.isfinite(source_fps):
        return cap
    if source_fps <= cap + 0.01:
        return source_fps
    return source_fps / math.ceil(source_fps / cap - 0.001)


def live_ladder(
    width: int, height: int, *, max_height: int = 720, max_rungs: int = 3
) -> list[LiveRung]:
    """Rungs for a ``width``x``height`` source, highest first: none above the source or
    ``max_height`` (short edge), at most ``max_rungs``, at least one."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a live ladder needs the source size, got {width}x{height}")
    top = min(width, height, max_height)
    chosen = [r for r in STANDARD_RUNGS if r[0] <= top][:max_rungs]
    if not chosen:
        base_short, base_kbps, base_audio = STANDARD_RUNGS[-1]
        kbps = max(MIN_VIDEO_KBPS, int(base_kbps * (top / base_short) ** 2))
        chosen = [(top, kbps, base_audio)]
    rungs = []
    for short, kbps, audio_kbps in chosen:
        w, h = scaled_dims(width, height, short)
        bitrate = kbps * 1000
        rungs.append(
            LiveRung(
                name=f"{min(w, h)}p",
                width=w,
                height=h,
                video_bitrate=bitrate,
                maxrate=int(bitrate * MAXRATE_FACTOR),
                bufsize=int(bitrate * BUFSIZE_FACTOR),
                audio_bitrate=audio_kbps * 1000,
            )
        )
    return rungs
