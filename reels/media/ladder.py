"""Bitrate-ladder rules shared by the VOD ladder (svc_transcode/ladder.py) and the live
ladder (svc_chat/ingest/ladder.py). Pure, no I/O.

Units: bitrates in bits per second on a :class:`Rendition` (the VBV ``bufsize`` in
bits; the tables below are in kbps, x1000), sizes in pixels, frame rates in frames per
second.

Figures: Owncast/Apple-style H.264 bitrates for 30 fps content (Owncast's video ladder
and the bitrate ladder of Apple's "HLS Authoring Specification for Apple Devices"): the
video and audio bitrate of each rung by its short edge; maxrate 1.06x and bufsize 1.2x
the video bitrate, as Owncast sets them for x264's rate control. The VOD ladder stops at
360p; the live ladder also has 240p.

The rules: rungs are chosen by the picture's SHORT edge, so a portrait 1080x1920 phone
clip is a "1080p" source exactly like a landscape 1920x1080 one (by height it would be
"1920p"; by width it would be squashed into 1080-wide landscape). No rung is above the
source (upscaling costs bits and looks no better) or above an optional cap, and there is
always at least one, so a tiny source still plays: a source smaller than the lowest rung
gets one rung at its own size, its bitrate scaled down by pixel count from the lowest
rung's (never below :data:`MIN_VIDEO_KBPS`).

What differs between the two ladders is a parameter here, not a fork: the table, the cap
on the top rung, the number of rungs, a bitrate multiplier (the VOD ladder's frame-rate
scaling) and the rung type (the VOD rung also carries its frame rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

# (short edge px, video kbps, audio kbps), highest first.
VOD_RUNGS: tuple[tuple[int, int, int], ...] = (
    (1080, 5000, 128),
    (720, 2500, 128),
    (480, 1200, 96),
    (360, 600, 64),
)
LIVE_RUNGS: tuple[tuple[int, int, int], ...] = (
    *VOD_RUNGS,
    (240, 300, 64),
)
MAXRATE_FACTOR = 1.06
BUFSIZE_FACTOR = 1.2
DEFAULT_FPS_CAP = 30.0  # fps; also the frame rate the table's bitrates are for
MIN_VIDEO_KBPS = 150


@dataclass(frozen=True)
class Rendition:
    """One rung of a ladder; ``name`` ("720p") doubles as the variant's folder name."""

    name: str
    width: int  # pixels
    height: int  # pixels
    video_bitrate: int  # bits per second
    maxrate: int  # bits per second
    bufsize: int  # bits
    audio_bitrate: int  # bits per second

    @property
    def short_edge(self) -> int:
        return min(self.width, self.height)


R = TypeVar("R", bound=Rendition)


def _even(value: float) -> int:
    """H.264 4:2:0 needs even dimensions; the nearest even number, at least 2."""
    return max(2, int(round(value / 2.0)) * 2)


def scaled_dims(width: int, height: int, short_edge: int) -> tuple[int, int]:
    """``width``x``height`` scaled to ``short_edge`` on its short side (even, same
    aspect ratio and orientation)."""
    src_short, src_long = min(width, height), max(width, height)
    long_edge = _even(src_long * short_edge / src_short)
    short = _even(short_edge)
    return (long_edge, short) if width >= height else (short, long_edge)


def output_fps(source_fps: float, cap: float = DEFAULT_FPS_CAP) -> float:
    """The source rate, or divided by an integer to stay under ``cap`` (60 -> 30, 50
    -> 25) so motion stays even; ``cap`` when the source does not say."""
    if source_fps <= 0 or not math.isfinite(source_fps):
        return cap
    if source_fps <= cap + 0.01:
        return source_fps
    return source_fps / math.ceil(source_fps / cap - 0.001)


def choose_rungs(
    width: int,
    height: int,
    table: Sequence[tuple[int, int, int]],
    *,
    max_short_edge: int | None = None,
    max_rungs: int | None = None,
) -> list[tuple[int, int, int]]:
    """The (short edge, video kbps, audio kbps) rows of ``table`` for a ``width``x
    ``height`` source: none above its short edge or ``max_short_edge``, at most
    ``max_rungs`` (None: no limit), and at least one (see the module docstring)."""
    top = min(width, height)
    if max_short_edge is not None:
        top = min(top, max_short_edge)
    chosen = [row for row in table if row[0] <= top][:max_rungs]
    if not chosen:
        base_short, base_kbps, base_audio = table[-1]
        kbps = max(MIN_VIDEO_KBPS, int(base_kbps * (top / base_short) ** 2))
        chosen = [(top, kbps, base_audio)]
    return chosen


def build_renditions(
    width: int,
    height: int,
    table: Sequence[tuple[int, int, int]],
    *,
    max_short_edge: int | None = None,
    max_rungs: int | None = None,
    bitrate_scale: float = 1.0,
    make: Callable[..., R] = Rendition,
) -> list[R]:
    """Rungs for a ``width``x``height`` source, highest first (:func:`choose_rungs`),
    each made by ``make`` (a :class:`Rendition` subclass, or a partial of one that
    supplies its extra fields) with the video bitrate multiplied by ``bitrate_scale``."""
    rungs = []
    for short, kbps, audio_kbps in choose_rungs(
        width, height, table, max_short_edge=max_short_edge, max_rungs=max_rungs
    ):
        w, h = scaled_dims(width, height, short)
        bitrate = int(kbps * 1000 * bitrate_scale)
        rungs.append(
            make(
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
