"""Probe an upload with ffprobe and decide, before any encoding, whether it is usable.

Rejecting a bad file here is cheap and gives the uploader a reason they can act on
("longer than 10 minutes") instead of a generic failure minutes later. Dimensions are
reported *as displayed*: phones record landscape sensor frames plus a rotation, and the
ladder must be built for what the viewer sees.

Display size: the coded width times the sample aspect ratio (ffprobe writes it "4:3",
with a colon), the height unchanged (what every player does; the height is the real
number of lines), then the rotation (legacy `rotate` tag or the display-matrix side data,
rounded to a quarter turn). svc_transcode's normalisation stage (svc_transcode/normalise.py)
reads the same ffprobe JSON (`ProbeResult.data`) for what this module does not decide:
scan type, colour and which audio track is decodable.

Decodability is judged by whether *frames come out* of a decode, not by whether the
decoder complained: seeking into the tail of an open-GOP H.264 file makes the decoder log
"mmco: unref short failure" for leading B-frames whose references precede the seek point,
although a full decode is clean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from reels.media.ffmpeg_run import FFMPEG, FFPROBE, UnusableMedia, run

__all__ = [
    "ProbeLimits",
    "ProbeResult",
    "UnusableMedia",
    "audio_candidates",
    "check_decodes",
    "display_size",
    "parse_ratio",
    "probe",
    "rotation_of",
]

# Codecs the Debian ffmpeg decodes reliably and that real uploads arrive in. Anything
# else (e.g. a GIF renamed .mp4, exotic screen codecs) is refused with its name.
SUPPORTED_VIDEO_CODECS = frozenset(
    {
        "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mpeg1video", "h263",
        "prores", "mjpeg", "dnxhd", "vc1", "wmv3", "theora",
    }
)  # fmt: skip

FALLBACK_FPS = 30.0
# A sample aspect ratio outside this range is a broken header, not a real pixel shape
# (the widest real one, 2:1, is anamorphic 1440x1080 HDV at 4:3 or DV 16:9 at 64:45).
SAR_RANGE = (Fraction(1, 4), Fraction(4, 1))


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
    # The sample aspect ratio of the coded pixels (1 when square or unknown).
    sample_aspect_ratio: Fraction = Fraction(1)
    # ffprobe's JSON as read, for svc_transcode's normalisation stage.
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def short_edge(self) -> int:
        return min(self.width, self.height)

    @property
    def long_edge(self) -> int:
        return max(self.width, self.height)

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width


def parse_ratio(value: Any) -> Fraction | None:
    """A ratio as ffprobe writes it: "16/9" (rates) or "4:3" (aspect ratios), or a number.

    None for unknown ("0/0", "0:1", "N/A", "", None) or nonsense (negative, zero).
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            return None
        return Fraction(value).limit_denominator(1_000_000)
    text = str(value).strip().replace(":", "/")
    try:
        ratio = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 else None


def _rate(value: str | None) -> float | None:
    """ffprobe rates are "num/den" strings; "0/0" means unknown."""
    ratio = parse_ratio(value)
    if ratio is None:
        return None
    rate = float(ratio)
    return rate if 0 < rate <= 1000 else None


# The highest frame rate a real camera stream has; a larger r_frame_rate is a timebase
# (MP4 phones report 90000/1 or 600/1 for variable-rate video), not a frame rate.
MAX_REAL_FPS = 120.0


def frame_rate(stream: dict[str, Any]) -> float:
    """The rate the ladder is built for: the stream's MAXIMUM frame rate, not its average.

    Phones write variable-frame-rate video (frames dropped in low light, on a 1/30 s
    grid): its average (avg_frame_rate, say 15.3) understates how often frames come, and
    ffmpeg encodes it at the real grid rate (r_frame_rate, 30), duplicating frames into
    the gaps. RFC 8216 4.3.4.2 wants FRAME-RATE to be the maximum, and the GOP must be
    counted at the rate frames are actually written, so r_frame_rate wins when it is a
    plausible camera rate at or above the average; a timebase-like r_frame_rate
    (90000/1) falls back to the average, and so does an interlaced stream, whose
    r_frame_rate is its field rate (50 for 25i). Unknown: 30 fps.
    """
    average = _rate(stream.get("avg_frame_rate"))
    grid = _rate(stream.get("r_frame_rate"))
    interlaced = str(stream.get("field_order") or "progressive") not in ("progressive", "unknown")
    plausible = grid is not None and grid <= MAX_REAL_FPS and not interlaced
    if plausible and (average is None or grid >= average - 0.01):  # type: ignore[operator]
        return grid  # type: ignore[return-value]
    return average or grid or FALLBACK_FPS


def sample_aspect_ratio(stream: dict[str, Any]) -> Fraction:
    """The coded pixels' shape; 1 when square, unknown, or outside SAR_RANGE (a bad header)."""
    sar = parse_ratio(stream.get("sample_aspect_ratio"))
    if sar is None or not SAR_RANGE[0] <= sar <= SAR_RANGE[1]:
        return Fraction(1)
    return sar


def _quarter_turn(degrees: float) -> int:
    """Nearest multiple of 90, in 0..270 (a display matrix can say -90.00000250447816)."""
    return (round(degrees / 90.0) * 90) % 360


def rotation_of(stream: dict[str, Any]) -> int:
    """Clockwise display rotation from the legacy `rotate` tag or the display matrix.

    The display matrix reports counter-clockwise degrees (rotate=90 shows as -90), so it is
    negated to match the tag's convention. Only quarter turns exist in practice; anything
    else is rounded to the nearest one.
    """
    tag = (stream.get("tags") or {}).get("rotate")
    if tag is not None:
        try:
            return _quarter_turn(float(tag))
        except ValueError:
            pass
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            try:
                return _quarter_turn(-float(side["rotation"]))
            except (TypeError, ValueError):
                continue
    return 0


_rotation = rotation_of  # the name older callers use


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def display_size(coded_w: int, coded_h: int, sar: Fraction, rotation: int) -> tuple[int, int]:
    """(width, height) as the viewer sees it: SAR applied to the width, then the rotation.

    Non-square pixels are widened or narrowed, never the height changed: the height is the
    number of lines the camera recorded, and it is what players keep too. An anamorphic
    width is rounded to even (H.264 4:2:0 rungs need even sizes anyway).
    """
    width = coded_w if sar == 1 else _even(coded_w * sar)
    return (coded_h, width) if rotation in (90, 270) else (width, coded_h)


def _decodable_codec(stream: dict[str, Any]) -> bool:
    """ffprobe names a codec only when this ffmpeg knows it (Apple APAC: no codec_name)."""
    name = stream.get("codec_name")
    return bool(name) and name not in ("none", "unknown")


def audio_candidates(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audio streams worth trying, best first: default disposition first, then file order;
    streams whose codec this ffmpeg does not know are left out."""
    audios = [s for s in streams if s.get("codec_type") == "audio" and _decodable_codec(s)]
    return sorted(audios, key=lambda s: 0 if (s.get("disposition") or {}).get("default") else 1)


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
    sar = sample_aspect_ratio(video)
    rotation = rotation_of(video)
    width, height = display_size(coded_w, coded_h, sar, rotation)

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

    fps = frame_rate(video)
    audios = audio_candidates(streams)
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
        sample_aspect_ratio=sar,
        data=data,
    )


TAIL_SECONDS = 1.0


def _frames(framecrc: bytes, streams: int = 1) -> list[int]:
    """Frames per output stream of a framecrc listing (lines ``<stream>, dts, pts, ...``)."""
    counts = [0] * streams
    for line in framecrc.splitlines():
        if line and not line.startswith(b"#"):
            index = int(line.split(b",", 1)[0] or 0)
            if 0 <= index < streams:
                counts[index] += 1
    return counts


def niced(argv: list[str], nice: int) -> list[str]:
    """``argv`` run at a lower CPU priority (``nice -n``) when ``nice`` > 0: checks that
    can wait yield the cores to request handling (svc_upload, issue 14)."""
    return ["nice", "-n", str(nice), *argv] if nice > 0 else argv


async def check_decodes(path: Path, duration_s: float, *, nice: int = 0) -> None:
    """Decode the first and the last second of video; refuse the file if no frame comes out.

    A file cut off mid-upload still carries a complete header (faststart moov), so it
    probes fine; decoding its last second finds nothing. The first second catches files
    whose codec data is garbage. The middle is checked by the ladder run itself
    (its decoder errors, counted: reels.media.ffmpeg_run.damage_verdict).

    One ffmpeg run decodes both windows (the file opened twice, as two inputs, each its
    own stream in one framecrc listing), and only one when the file is a second long
    or shorter (the windows are the same): ffmpeg's start-up, not the decode, is most
    of the cost on a short clip.

    What the decoder *says* is not the test: a seek lands on a keyframe, and in an
    open-GOP stream the B-frames that follow it reference pictures before the seek point,
    so the H.264 decoder logs "mmco: unref short failure" / "reference picture missing"
    for a perfectly good file. ffmpeg's exit status (it fails when the input cannot be
    opened or read) and the number of frames decoded decide.
    """
    tail_start = max(0.0, duration_s - TAIL_SECONDS)
    windows: list[tuple[str, float | None]] = [("start", None)]
    if tail_start > 0:
        windows.append(("end", tail_start))
    argv = [FFMPEG, "-nostdin", "-v", "error"]
    for _, seek in windows:
        if seek:
            argv += ["-ss", f"{seek:.3f}"]
        argv += ["-t", f"{TAIL_SECONDS:g}", "-i", str(path)]
    for index in range(len(windows)):
        argv += ["-map", f"{index}:v:0"]
    argv += ["-f", "framecrc", "-"]
    done = await run(niced(argv, nice), capture_stdout=True, timeout_s=60)
    frames = _frames(done.stdout, len(windows))
    for (label, _), count in zip(windows, frames, strict=True):
        if done.returncode != 0 and count == 0:
            raise UnusableMedia(
                f"the video is corrupt and cannot be decoded near its {label} "
                f"({_first_line(done.stderr_tail)})"
            )
        if count == 0:
            raise UnusableMedia(
                f"the video is truncated or corrupt: no picture decodes near its {label}"
            )


async def probe(
    path: Path | str,
    limits: ProbeLimits | None = None,
    *,
    decode_check: bool = True,
    nice: int = 0,
) -> ProbeResult:
    """Probe `path`; raise UnusableMedia with a person-readable reason if it cannot be used.

    ``nice`` > 0 runs ffprobe and the decode check at that lower CPU priority.
    """
    path = Path(path)
    limits = limits or ProbeLimits()
    done = await run(
        niced([
            FFPROBE, "-v", "error", "-print_format", "json",
            "-show_format", "-show_streams", str(path),
        ], nice),
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
        await check_decodes(path, result.duration_s, nice=nice)
    return result
