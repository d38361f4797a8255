"""The bitrate ladder: which renditions a source gets.

Rungs are chosen by the source's SHORT edge, so a portrait 1080x1920 phone clip is a
"1080p" source exactly like a landscape 1920x1080 one; choosing by height would call it
"1920p" or, worse, by width would treat it as 1080-wide landscape and squash it. We never
upscale (it costs bits and looks no better) and always emit at least one rung so a tiny
upload still plays.

Width and height are the *display* size the normalisation stage settled
(svc_transcode/normalise.py: sample aspect ratio and rotation applied), so every rung has
the picture's real aspect ratio in square pixels: a 1440x1080 SAR 4:3 source is a
1920x1080 source here, and its rungs are 16:9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (short edge, video kbps, audio kbps): Owncast/Apple-style figures for H.264 at 30 fps.
STANDARD_RUNGS: tuple[tuple[int, int, int], ...] = (
    (1080, 5000, 128),
    (720, 2500, 128),
    (480, 1200, 96),
    (360, 600, 64),
)
MAXRATE_FACTOR = 1.06
BUFSIZE_FACTOR = 1.2
DEFAULT_FPS_CAP = 30.0
MIN_VIDEO_KBPS = 150


@dataclass(frozen=True)
class Rung:
    """One rendition: its name doubles as the variant's directory name."""

    name: str
    width: int
    height: int
    video_bitrate: int  # bits per second
    maxrate: int
    bufsize: int
    audio_bitrate: int
    fps: float

    @property
    def short_edge(self) -> int:
        return min(self.width, self.height)


def _even(value: float) -> int:
    """H.264 4:2:0 needs even dimensions; round to the nearest even number, min 2."""
    return max(2, int(round(value / 2.0)) * 2)


def scaled_dims(width: int, height: int, short_edge: int) -> tuple[int, int]:
    """Dimensions with the given short edge and the source's aspect ratio (even)."""
    src_short, src_long = min(width, height), max(width, height)
    long_edge = _even(src_long * short_edge / src_short)
    short = _even(short_edge)
    return (long_edge, short) if width >= height else (short, long_edge)


def output_fps(source_fps: float, cap: float = DEFAULT_FPS_CAP) -> float:
    """Cap the frame rate by an integer divisor so motion stays even (60→30, 50→25)."""
    if source_fps <= 0 or not math.isfinite(source_fps):
        return cap
    if source_fps <= cap + 0.01:
        return source_fps
    return source_fps / math.ceil(source_fps / cap - 0.001)


def build_ladder(
    width: int, height: int, source_fps: float, *, fps_cap: float = DEFAULT_FPS_CAP
) -> list[Rung]:
    """Rungs for a source of (displayed) `width`x`height`, highest first."""
    fps = output_fps(source_fps, fps_cap)
    src_short = min(width, height)
    chosen = [r for r in STANDARD_RUNGS if r[0] <= src_short]
    if not chosen:
        # Smaller than the lowest standard rung: one rung at the source's own size, the
        # bitrate scaled down by pixel count from the lowest standard rung.
        base_short, base_kbps, base_audio = STANDARD_RUNGS[-1]
        ratio = (src_short / base_short) ** 2
        chosen = [(src_short, max(MIN_VIDEO_KBPS, int(base_kbps * ratio)), base_audio)]
    rungs = []
    for short, kbps, audio_kbps in chosen:
        w, h = scaled_dims(width, height, short)
        # Above 30 fps x264 needs more bits for the same quality; scale gently.
        bitrate = int(kbps * 1000 * max(1.0, fps / DEFAULT_FPS_CAP) ** 0.5)
        rungs.append(
            Rung(
                name=f"{min(w, h)}p",
                width=w,
                height=h,
                video_bitrate=bitrate,
                maxrate=int(bitrate * MAXRATE_FACTOR),
                bufsize=int(bitrate * BUFSIZE_FACTOR),
                audio_bitrate=audio_kbps * 1000,
                fps=fps,
            )
        )
    return rungs
