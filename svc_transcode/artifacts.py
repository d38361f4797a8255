"""Poster thumbnail, feed preview clip and scrubbing storyboard for a transcoded video.

The preview and the storyboard are cut from the lowest HLS rung, not the source:
decoding a 360p H.264 stream costs a small fraction of decoding a 1080p (or 4K HEVC)
original, and both artifacts are small anyway. The thumbnail is the one artifact people
look at full-screen, so it comes from the source with a short seek.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reels.media.ffmpeg_run import FFMPEG, ffmpeg_failure, run

THUMBNAIL_NAME = "thumbnail.jpg"
PREVIEW_NAME = "preview.mp4"
STORYBOARD_IMAGE = "storyboard.jpg"
STORYBOARD_JSON = "storyboard.json"
STORYBOARD_VTT = "storyboard.vtt"

PREVIEW_SECONDS = 3.0
THUMBNAIL_MAX_SHORT_EDGE = 720
TILE_WIDTH = 160
MAX_TILES = 100
TILE_COLUMNS = 10


@dataclass(frozen=True)
class StoryboardLayout:
    """Where each moment of the video sits in the sprite, for the player's scrub bar."""

    interval_s: float
    count: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    def tile(self, index: int) -> tuple[int, int]:
        return (index % self.columns) * self.tile_width, (index // self.columns) * self.tile_height


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def storyboard_layout(duration_s: float, width: int, height: int) -> StoryboardLayout:
    """One tile a second for short clips, at most MAX_TILES tiles for long ones."""
    interval = max(1.0, duration_s / MAX_TILES)
    count = max(1, math.ceil(duration_s / interval - 1e-6))
    columns = min(TILE_COLUMNS, count)
    rows = math.ceil(count / columns)
    return StoryboardLayout(
        interval_s=interval,
        count=count,
        columns=columns,
        rows=rows,
        tile_width=TILE_WIDTH,
        tile_height=_even(TILE_WIDTH * height / width),
    )


async def _ffmpeg(argv: list[str], what: str) -> None:
    """Run ffmpeg; a failure is routed like the ladder's (reels.media.ffmpeg_run)."""
    done = await run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", *argv])
    if done.returncode != 0:
        raise ffmpeg_failure(done.returncode, done.stderr_tail, f"making the {what}")


async def make_thumbnail(
    src: Path,
    out: Path,
    *,
    duration_s: float,
    width: int,
    height: int,
    pre_filters: Sequence[str] = (),
    video_map: str = "0:v:0",
) -> None:
    """A representative frame from around a third of the way in.

    Frame 0 is often black or a fade; the `thumbnail` filter picks the frame closest to
    the average of a short window, which skips flashes and transition frames.
    `pre_filters` are the normalisation stage's deinterlacing and colour conversion
    (svc_transcode/normalise.py), so the poster is not combed or washed out either;
    `width`x`height` is the display size, so `scale` + `setsar=1` gives square pixels.
    """
    scale = min(1.0, THUMBNAIL_MAX_SHORT_EDGE / min(width, height))
    w, h = _even(width * scale), _even(height * scale)
    start = max(0.0, min(duration_s / 3, duration_s - 1.0))
    window = max(0.2, min(2.0, duration_s - start))
    await _ffmpeg(
        [
            "-ss", f"{start:.3f}", "-t", f"{window:.3f}", "-i", str(src),
            "-map", video_map,
            "-vf", ",".join([*pre_filters, "thumbnail=25", f"scale={w}:{h}", "setsar=1"]),
            "-frames:v", "1", "-q:v", "3", "-update", "1", str(out),
        ],
        "thumbnail",
    )  # fmt: skip


async def make_preview(low_rung_playlist: Path, out: Path, *, duration_s: float) -> None:
    """A 3 s silent H.264 clip for autoplaying previews in the feed and in search.

    Silent because previews autoplay muted everywhere; faststart so it plays while
    downloading. It starts a fifth of the way in, past most intros.
    """
    length = min(PREVIEW_SECONDS, duration_s)
    start = max(0.0, min(duration_s * 0.2, duration_s - length))
    await _ffmpeg(
        [
            "-ss", f"{start:.3f}", "-i", str(low_rung_playlist), "-t", f"{length:.3f}",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "30",
            "-profile:v", "main", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(out),
        ],
        "preview",
    )  # fmt: skip


def storyboard_vtt(layout: StoryboardLayout, image_name: str, duration_s: float) -> str:
    """WebVTT thumbnails track (the `#xywh=` convention of JW Player, Video.js, Vidstack)."""

    def ts(seconds: float) -> str:
        ms = int(round(seconds * 1000))
        hours, minutes, secs = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
        return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms % 1000:03d}"

    lines = ["WEBVTT", ""]
    for i in range(layout.count):
        start = i * layout.interval_s
        end = min(duration_s, (i + 1) * layout.interval_s)
        x, y = layout.tile(i)
        lines += [
            f"{ts(start)} --> {ts(end)}",
            f"{image_name}#xywh={x},{y},{layout.tile_width},{layout.tile_height}",
            "",
        ]
    return "\n".join(lines)


async def make_storyboard(
    low_rung_playlist: Path,
    out_dir: Path,
    *,
    duration_s: float,
    width: int,
    height: int,
) -> StoryboardLayout:
    """A JPEG sprite of small frames plus JSON and WebVTT that say which tile is when."""
    layout = storyboard_layout(duration_s, width, height)
    # Sample the middle of each interval: the first frame of a clip is often black.
    vf = (
        f"fps=1/{layout.interval_s:.6f},"
        f"scale={layout.tile_width}:{layout.tile_height},setsar=1,"
        f"tile={layout.columns}x{layout.rows}"
    )
    await _ffmpeg(
        [
            "-ss", f"{layout.interval_s / 2:.3f}", "-i", str(low_rung_playlist),
            "-an", "-vf", vf,
            "-frames:v", "1", "-q:v", "5", "-update", "1", str(out_dir / STORYBOARD_IMAGE),
        ],
        "storyboard",
    )  # fmt: skip
    index = {
        "image": STORYBOARD_IMAGE,
        "interval_s": layout.interval_s,
        "count": layout.count,
        "columns": layout.columns,
        "rows": layout.rows,
        "tile_width": layout.tile_width,
        "tile_height": layout.tile_height,
        "tiles": [
            {
                "start_s": round(i * layout.interval_s, 3),
                "end_s": round(min(duration_s, (i + 1) * layout.interval_s), 3),
                "x": layout.tile(i)[0],
                "y": layout.tile(i)[1],
            }
            for i in range(layout.count)
        ],
    }
    vtt = storyboard_vtt(layout, STORYBOARD_IMAGE, duration_s)
    await asyncio.to_thread((out_dir / STORYBOARD_JSON).write_text, json.dumps(index, indent=1))
    await asyncio.to_thread((out_dir / STORYBOARD_VTT).write_text, vtt)
    return layout
