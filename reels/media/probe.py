"""Probe an upload with ffprobe and decide, before any encoding, whether it is usable.

Rejecting a bad file here is cheap and gives the uploader a reason they can act on
("longer than 10 minutes") instead of a generic failure minutes later. Dimensions are
reported *as displayed*: phones record landscape sensor frames plus a rotation, and the
ladder must be built for what the viewer sees.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from reels.media.ffmpeg_run import FFMPEG, FFPROBE, UnusableMedia, run

__all__ = ["ProbeLimits", "ProbeResult", "UnusableMedia", "probe", "check_decodes"]

# Codecs the Debian ffmpeg decodes reliably and that real uploads arrive in. Anything
# else (e.g. a GIF renamed .mp4, exotic screen codecs) is refused with its name.
SUPPORTED_VIDEO_CODECS = frozenset(
    {
        "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mpeg1video", "h263",
        "prores", "mjpeg", "dnxhd", "vc1", "wmv3", "theora",
    }
)  # fmt: skip

FALLBACK_FPS = 30.0


@dataclass(frozen=True)
class ProbeLimits:
    """Bounds an upload must fit; defaults match a short-video product (≤ 10 min)."""

    min_duration_s: float = 0.5
    max_duration_s: float = 600.0
    min_short_edge: int = 144
    # 8K (7680x4320) phone video fits; the ladder scales it down, never up.
    max_long_edge: int = 8192


@dataclass(frozen=True)
class ProbeResult:
    """What the rest of the pipeline needs to know about the source, rotation applied."""

    duration_s: float
    width: int  # displayed width (after rotation and sample aspect ratio)
    height: int  # displayed height
    rotation: int  # clockwise degrees the player must turn the coded frame: 0/90/180/270
    fps: float
    video_codec: str
    has_audio: bool
    audio_codec: str | None
    bit_rate: int | None
    format_name: str

    @property
    def short_edge(self) -> int:
        return min(self.width, self.height)

    @property
    def long_edge(self) -> int:
        return max(self.width, self.height)

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width


def _rate(value: str | None) -> float | None:
    """ffprobe rates are "num/den" strings; "0/0" means unknown."""
    if not value:
        return None
    try:
        rate = float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        return None
    return rate if 0 < rate <= 1000 else None


def _rotation(stream: dict[str, Any]) -> int:
    """Clockwise display rotation from the legacy `rotate` tag or the display matrix.

    The display matrix reports counter-clockwise degrees (rotate=90 shows as -90), so it is
    negated to match the tag's convention.
    """
    tag = stream.get("tags", {}).get("rotate")
    if tag is not None:
        try:
            return round(float(tag)) % 360
        except ValueError:
            pass
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            try:
                return round(-float(side["rotation"])) % 360
            except (TypeError, ValueError):
                continue
    return 0


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else "unknown error"


def parse_probe(data: dict[str, Any], limits: ProbeLimits) -> ProbeResult:
    """Turn ffprobe's JSON into a ProbeResult, refusing what the pipeline cannot serve."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    if not videos:
        raise UnusableMedia("the file has no video stream")
    video = videos[0]
    codec = video.get("codec_name") or "unknown"
    if codec not in SUPPORTED_VIDEO_CODECS:
        raise UnusableMedia(f"video codec '{codec}' is not supported")

    coded_w, coded_h = _int(video.get("width")) or 0, _int(video.get("height")) or 0
    if coded_w <= 0 or coded_h <= 0:
        raise UnusableMedia("the video stream has no picture size")
    sar = _rate(video.get("sample_aspect_ratio"))
    if sar and abs(sar - 1) > 0.01:
        coded_w = int(round(coded_w * sar))
    rotation = _rotation(video)
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)

    duration = _float(fmt.get("duration")) or _float(video.get("duration"))
    if duration is None:
        raise UnusableMedia("the file's duration cannot be determined")
    if duration < limits.min_duration_s:
        raise UnusableMedia(
            f"the video is {duration:.2f} s long; the minimum is {limits.min_duration_s:g} s"
        )
    if duration > limits.max_duration_s:
        raise UnusableMedia(
            f"the video is {duration:.0f} s long; the maximum is {limits.max_duration_s:g} s"
        )
    if min(width, height) < limits.min_short_edge:
        raise UnusableMedia(
            f"the video is {width}x{height}; its short edge must be at least "
            f"{limits.min_short_edge} px"
        )
    if max(width, height) > limits.max_long_edge:
        raise UnusableMedia(
            f"the video is {width}x{height}; its long edge must be at most "
            f"{limits.max_long_edge} px"
        )

    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")) or FALLBACK_FPS
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    return ProbeResult(
        duration_s=duration,
        width=width,
        height=height,
        rotation=rotation,
        fps=fps,
        video_codec=codec,
        has_audio=bool(audios),
        audio_codec=audios[0].get("codec_name") if audios else None,
        bit_rate=_int(fmt.get("bit_rate")) or _int(video.get("bit_rate")),
        format_name=fmt.get("format_name") or "unknown",
    )


async def check_decodes(path: Path, duration_s: float) -> None:
    """Decode the first and the last second of video.

    A file cut off mid-upload still carries a complete header (faststart moov), so it
    probes fine; decoding its last second finds nothing. The first second catches files
    whose codec data is garbage. The middle is checked by the ladder run itself
    (`-xerror`), which decodes every frame anyway.
    """
    tail_start = max(0.0, duration_s - 1.0)
    for label, seek in (("start", None), ("end", tail_start)):
        argv = [FFMPEG, "-nostdin", "-v", "error"]
        if seek:
            argv += ["-ss", f"{seek:.3f}"]
        argv += ["-t", "1", "-i", str(path), "-map", "0:v:0", "-f", "framecrc", "-"]
        done = await run(argv, capture_stdout=True, timeout_s=60)
        frames = sum(1 for line in done.stdout.splitlines() if line and not line.startswith(b"#"))
        if done.returncode != 0 or done.stderr_tail.strip():
            raise UnusableMedia(
                f"the video is corrupt and cannot be decoded near its {label} "
                f"({_first_line(done.stderr_tail)})"
            )
        if frames == 0:
            raise UnusableMedia(
                f"the video is truncated or corrupt: no picture decodes near its {label}"
            )


async def probe(
    path: Path | str, limits: ProbeLimits | None = None, *, decode_check: bool = True
) -> ProbeResult:
    """Probe `path`; raise UnusableMedia with a person-readable reason if it cannot be used."""
    path = Path(path)
    limits = limits or ProbeLimits()
    done = await run(
        [
            FFPROBE, "-v", "error", "-print_format", "json",
            "-show_format", "-show_streams", str(path),
        ],
        capture_stdout=True,
        timeout_s=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise UnusableMedia(f"not a video file that can be read ({_first_line(done.stderr_tail)})")
    try:
        data = json.loads(done.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise UnusableMedia("not a video file that can be read") from exc
    result = parse_probe(data, limits)
    if decode_check:
        await check_decodes(path, result.duration_s)
    return result
