"""The live ladder: which renditions a live stream gets. Pure, no I/O.

The rules and figures are shared with the VOD ladder and live in reels/media/ladder.py
(a service never imports another service's package, DESIGN.md "Rules of the house"):
rungs are chosen by the picture's SHORT edge (a portrait phone is a 720p source like a
landscape one), never above the source; a source smaller than the lowest standard rung
gets one rung at its own size; maxrate is 1.06x and bufsize 1.2x the bitrate, as
Owncast sets them. What is live's own: the table goes down to 240p, the top rung is at
most ``max_height`` (720 by default) on its short edge, there are at most ``max_rungs``
rungs, and the bitrates are not scaled by frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from reels.media.ladder import DEFAULT_FPS_CAP as FPS_CAP
from reels.media.ladder import LIVE_RUNGS as STANDARD_RUNGS
from reels.media.ladder import Rendition, build_renditions, output_fps, scaled_dims

# Re-exported: broadcast.py and tests import output_fps from here.
__all__ = ["FPS_CAP", "STANDARD_RUNGS", "LiveRung", "live_ladder", "output_fps", "scaled_dims"]


@dataclass(frozen=True)
class LiveRung(Rendition):
    """One live rendition; ``name`` ("720p") is also its folder under ``live/{id}/``."""


def live_ladder(
    width: int, height: int, *, max_height: int = 720, max_rungs: int = 3
) -> list[LiveRung]:
    """Rungs for a ``width``x``height`` source, highest first: none above the source or
    ``max_height`` (short edge), at most ``max_rungs``, at least one."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a live ladder needs the source size, got {width}x{height}")
    return build_renditions(
        width,
        height,
        STANDARD_RUNGS,
        max_short_edge=max_height,
        max_rungs=max_rungs,
        make=LiveRung,
    )
