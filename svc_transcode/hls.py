"""HLS: the single ffmpeg command for the whole ladder, and the master playlist we write.

One invocation decodes the source once and `split`s it to every rung (Owncast's
approach; measured ~1.25x faster here than one run per rung). Keyframes are forced every
segment length on every rung so segment boundaries line up across renditions and a
player can switch rungs at any segment. Those argv pieces are shared with the live
ladder's command (reels/media/hls_args.py).

Segments are MPEG-TS, not fMP4: every segment is self-contained (no init segment), which
plays on every HLS client we care about (old Android ExoPlayer, hls.js, Safari), lets the
origin serve or cache segments individually, and makes the measured BANDWIDTH honestly
include the container overhead a player downloads. fMP4 would save ~5-10 % of bytes;
revisit if HEVC/AV1 rungs are added (those need fMP4).

The master playlist is written by us rather than ffmpeg's `master_pl_name` because
ffmpeg advertises the *configured* bitrate and a generic CODECS string; Apple's spec
wants the measured peak segment bitrate and the real profile/level.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reels.media import hls_args
from reels.media.ffmpeg_run import FFMPEG, FFPROBE, run
from svc_transcode.ladder import Rung

SEGMENT_SECONDS = 2
DEFAULT_PRESET = "veryfast"
PLAYLIST_NAME = "index.m3u8"
MASTER_NAME = "master.m3u8"
SEGMENT_PATTERN = "seg_%04d.ts"


@dataclass(frozen=True)
class LadderCommand:
    """The argv plus where each rung's playlist will appear (relative to work_dir)."""

    argv: list[str]
    playlists: dict[str, str]  # rung name -> "720p/index.m3u8"


def build_ladder_command(
    src: Path,
    work_dir: Path,
    rungs: list[Rung],
    *,
    has_audio: bool,
    source_fps: float,
    preset: str = DEFAULT_PRESET,
    progress: bool = True,
    threads: int = 0,
    video_map: str = "0:v:0",
    pre_filters: Sequence[str] = (),
    colour_filters: Sequence[str] = (),
    audio_map: str = "0:a:0",
    output_args: Sequence[str] = (),
) -> LadderCommand:
    """ffmpeg argv encoding every rung in one pass into `work_dir/<rung>/`.

    `video_map`, `pre_filters` (deinterlacing: first in the graph), `colour_filters`
    (tone-map, colour conversion: after the frame-rate cap, so dropped frames cost
    nothing), `audio_map` and `output_args` (colour tags) come from the normalisation stage
    (svc_transcode/normalise.py `plan`); the defaults are a plain SDR progressive source.

    Rotation: ffmpeg autorotates on decode (the rotation filter is inserted ahead of the
    filtergraph), so frames reaching `split` are already upright and the explicit
    `scale=WxH` matches the probe's rotated dimensions; the output carries no rotation.
    """
    if not rungs:
        raise ValueError("a ladder needs at least one rung")
    fps = rungs[0].fps
    gop = hls_args.gop_frames(fps, SEGMENT_SECONDS)
    pre: list[str] = list(pre_filters)
    if abs(fps - source_fps) > 0.01:
        pre.append(f"fps={fps:.6g}")
    pre += colour_filters
    pre.append("format=yuv420p")  # 10-bit/4:2:2 sources (ProRes, HDR phones) -> 8-bit High

    argv = [FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error"]
    if progress:
        argv += ["-progress", "pipe:1", "-nostats"]
    else:
        argv += ["-nostats"]
    # No -xerror: decoders conceal small damage and the frames still come out; the
    # pipeline judges the whole run's decoder errors instead (ffmpeg_run.damage_verdict).
    argv += ["-i", str(src), "-filter_complex", hls_args.split_scale_graph(video_map, pre, rungs)]
    argv += hls_args.rung_maps(len(rungs), audio_map if has_audio else None)
    argv += [
        "-c:v", "libx264", "-preset", preset, "-profile:v", "high",
        *hls_args.keyframe_args(gop, SEGMENT_SECONDS),
        "-threads", str(threads), *output_args,
    ]  # fmt: skip
    argv += hls_args.rung_rate_args(rungs, has_audio)
    argv += [
        "-f", "hls",
        "-hls_time", str(SEGMENT_SECONDS),
        "-hls_playlist_type", "vod",
        "-hls_segment_type", "mpegts",
        "-hls_flags", "independent_segments",
        "-hls_list_size", "0",
        "-hls_segment_filename", str(work_dir / "%v" / SEGMENT_PATTERN),
        "-var_stream_map", hls_args.var_stream_map(rungs, has_audio),
        str(work_dir / "%v" / PLAYLIST_NAME),
    ]  # fmt: skip
    playlists = {r.name: f"{r.name}/{PLAYLIST_NAME}" for r in rungs}
    return LadderCommand(argv=argv, playlists=playlists)


@dataclass(frozen=True)
class VariantStats:
    """Measured facts about one produced rendition, for the master playlist.

    `peak_bps` is RFC 8216's peak segment bit rate (section 4.3.4.2), never below
    `average_bps`, so it is a valid BANDWIDTH; `average_bps` is AVERAGE-BANDWIDTH.
    """

    peak_bps: int
    average_bps: int
    codecs: str
    segment_durations: tuple[float, ...]


def parse_media_playlist(text: str) -> list[tuple[float, str]]:
    """(duration, uri) for every segment in a media playlist."""
    segments: list[tuple[float, str]] = []
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((duration, line))
            duration = None
    return segments


def parse_target_duration(text: str) -> int | None:
    """The EXT-X-TARGETDURATION of a media playlist, or None when it has none."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-TARGETDURATION:"):
            return int(line.split(":", 1)[1])
    return None


def peak_segment_bit_rate(
    sizes: list[int], durations: list[float], target_duration: float
) -> float:
    """RFC 8216 section 4.3.4.2's peak segment bit rate, in bits per second.

    The largest bit rate of any run of contiguous segments lasting between 0.5 and 1.5
    times the target duration, a run's rate being the sum of its sizes (in bits) over the
    sum of its durations. Sizes are whole files, so every stream muxed into the segment
    (video and audio) and the container are counted. A short last segment is no
    exception: it counts as part of any run it completes, so a dense tail raises the peak.

    When no run qualifies (the whole video is shorter than half the target duration)
    the RFC defines nothing; the largest single-segment rate is used, which is never
    below the average.
    """
    if len(sizes) != len(durations) or not sizes:
        raise ValueError("one size per segment, and at least one segment")
    low, high = 0.5 * target_duration, 1.5 * target_duration
    eps = 1e-6  # EXTINF is written with 6 decimals
    peak: float | None = None
    for i in range(len(sizes)):
        bits, seconds = 0, 0.0
        for j in range(i, len(sizes)):
            bits += sizes[j] * 8
            seconds += durations[j]
            if seconds > high + eps:
                break
            if seconds >= low - eps and seconds > 0:
                rate = bits / seconds
                peak = rate if peak is None else max(peak, rate)
    if peak is None:
        peak = max(s * 8 / d for s, d in zip(sizes, durations, strict=True) if d > 0)
    return peak


# ffprobe's H.264 profile names -> profile_idc (for when no SPS can be read).
_H264_PROFILE_IDC = {
    "constrained baseline": 66,
    "baseline": 66,
    "main": 77,
    "extended": 88,
    "high": 100,
    "high 10": 110,
    "high 4:2:2": 122,
    "high 4:4:4 predictive": 244,
}


async def _ffprobe_stream(segment: Path, selector: str) -> dict[str, object] | None:
    done = await run(
        [
            FFPROBE, "-v", "error", "-select_streams", selector,
            "-show_entries", "stream=codec_name,profile,level", "-of", "json", str(segment),
        ],
        capture_stdout=True,
        timeout_s=30,
    )  # fmt: skip
    streams = json.loads(done.stdout or b"{}").get("streams") or []
    return streams[0] if streams else None


async def _video_codec_string(segment: Path) -> str:
    """The "avc1.PPCCLL" string from the segment's first SPS.

    The elementary stream is copied out with ffmpeg rather than searched for in the
    MPEG-TS bytes, where a NAL header could straddle a 188-byte packet. ffprobe's
    profile and level are the fallback (it does not report the constraint flags).
    """
    done = await run(
        [
            FFMPEG, "-v", "error", "-nostdin", "-i", str(segment), "-map", "0:v:0",
            "-c", "copy", "-frames:v", "1", "-f", "h264", "pipe:1",
        ],
        capture_stdout=True,
        timeout_s=30,
    )  # fmt: skip
    found = avc1_from_sps(done.stdout or b"") if done.returncode == 0 else None
    if found:
        return found
    stream = await _ffprobe_stream(segment, "v:0")
    if not stream or stream.get("codec_name") != "h264":
        raise ValueError(f"{segment} has no H.264 video")
    profile = _H264_PROFILE_IDC.get(str(stream.get("profile") or "").lower(), 100)
    constraints = 0x40 if str(stream.get("profile")).lower() == "constrained baseline" else 0
    level = int(str(stream.get("level") or 40))
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


def avc1_from_sps(data: bytes) -> str | None:
    """The "avc1.PPCCLL" string from the first H.264 SPS NAL in an Annex-B byte stream.

    Read from the bitstream because ffprobe reports profile and level but not the
    constraint flags byte, which players compare too.
    """
    start = 0
    while True:
        i = data.find(b"\x00\x00\x01", start)
        if i < 0 or i + 6 > len(data):
            return None
        if data[i + 3] & 0x1F == 7:  # SPS
            profile, constraints, level = data[i + 4], data[i + 5], data[i + 6]
            return f"avc1.{profile:02x}{constraints:02x}{level:02x}"
        start = i + 3


# RFC 6381 strings for the audio codecs a TS segment may carry.
_AUDIO_CODECS = {"mp3": "mp4a.40.34", "ac3": "ac-3", "eac3": "ec-3"}


async def _audio_codec_string(segment: Path) -> str | None:
    stream = await _ffprobe_stream(segment, "a:0")
    if not stream:
        return None
    name = stream.get("codec_name")
    if name == "aac":
        profile = str(stream.get("profile") or "").upper()
        if "HE-AACV2" in profile:
            return "mp4a.40.29"
        return "mp4a.40.5" if "HE" in profile else "mp4a.40.2"
    return _AUDIO_CODECS.get(str(name))


async def measure_variant(playlist: Path) -> VariantStats:
    """BANDWIDTH, AVERAGE-BANDWIDTH and CODECS of one variant, measured from its files.

    Sizes are the segment files' (everything a player downloads); durations are the
    playlist's EXTINF values, and the target duration its EXT-X-TARGETDURATION.
    """
    text = await asyncio.to_thread(playlist.read_text)
    segments = parse_media_playlist(text)
    if not segments:
        raise ValueError(f"{playlist} lists no segments")
    target = parse_target_duration(text)
    durations = [d for d, _ in segments]
    if target is None:
        target = max(1, math.floor(max(durations) + 0.5))
    sizes = [(playlist.parent / uri).stat().st_size for _, uri in segments]
    average = sum(sizes) * 8 / sum(durations)
    peak = max(peak_segment_bit_rate(sizes, durations, target), average)
    first = playlist.parent / segments[0][1]
    video = await _video_codec_string(first)
    audio = await _audio_codec_string(first)
    codecs = f"{video},{audio}" if audio else video
    return VariantStats(
        peak_bps=int(math.ceil(peak)),
        average_bps=int(math.ceil(average)),
        codecs=codecs,
        segment_durations=tuple(durations),
    )


def master_playlist(entries: list[tuple[Rung, str, VariantStats]]) -> str:
    """Master playlist text; `entries` is (rung, playlist uri, measured stats).

    The first variant is what most players start with before they have a bandwidth
    estimate, so the rung closest to 720p (at or below it) goes first for a fast, sharp
    start; the rest follow highest first.
    """
    ordered = sorted(entries, key=lambda e: -e[2].peak_bps)
    starters = [e for e in ordered if e[0].short_edge <= 720]
    if starters:
        ordered.remove(starters[0])
        ordered.insert(0, starters[0])
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rung, uri, stats in ordered:
        # RFC 8216 4.3.4.2: AVERAGE-BANDWIDTH never exceeds BANDWIDTH.
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={max(stats.peak_bps, stats.average_bps)},"
            f"AVERAGE-BANDWIDTH={stats.average_bps},"
            f"RESOLUTION={rung.width}x{rung.height},"
            f'CODECS="{stats.codecs}",'
            f"FRAME-RATE={rung.fps:.3f}"
        )
        lines.append(uri)
    return "\n".join(lines) + "\n"
