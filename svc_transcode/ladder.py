"""The VOD bitrate ladder: which renditions a source gets.

The rules and figures are shared with the live ladder and live in reels/media/ladder.py:
rungs by the source's SHORT edge (a portrait 1080x1920 phone clip is a "1080p" source
exactly like a landscape 1920x1080 one), never above the source, and at least one rung
so a tiny upload still plays. What is VOD's own: the table stops at 360p, every rung
carries the output frame rate, and above 30 fps the video bitrate is scaled up gently.

Width and height are the *display* size the normalisation stage settled
(svc_transcode/normalise.py: sample aspect ratio and rotation applied), so every rung has
the picture's real aspect ratio in square pixels: a 1440x1080 SAR 4:3 source is a
1920x1080 source here, and its rungs are 16:9.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from reels.media.ladder import DEFAULT_FPS_CAP, Rendition, build_renditions, output_fps, scaled_dims
from reels.media.ladder import VOD_RUNGS as STANDARD_RUNGS

# Re-exported: pipeline.py, bench/ and tests import these from here.
__all__ = ["DEFAULT_FPS_CAP", "STANDARD_RUNGS", "Rung", "build_ladder", "output_fps", "scaled_dims"]


@dataclass(frozen=True)
class Rung(Rendition):
    """One rendition: its name doubles as the variant's directory name."""

    fps: float


def build_ladder(
    width: int, height: int, source_fps: float, *, fps_cap: float = DEFAULT_FPS_CAP
) -> list[Rung]:
    """Rungs for a source of (displayed) `width`x`height`, highest first."""
    fps = output_fps(source_fps, fps_cap)
    # Above 30 fps x264 needs more bits for the same quality; scale gently.
    scale = max(1.0, fps / DEFAULT_FPS_CAP) ** 0.5
    return build_renditions(
        width, height, STANDARD_RUNGS, bitrate_scale=scale, make=partial(Rung, fps=fps)
    )
